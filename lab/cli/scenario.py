"""Commands that run scenarios: run, verify (a set, for CI), sweep (one scenario over a grid
of link settings). The work is in lab/scenario; the reports in lab/report."""

from __future__ import annotations

import json
from pathlib import Path

from lab.core.errors import EXIT_FAIL, EXIT_OK, UsageError
from lab.report import sweep as sweep_report
from lab.report.index import write_index
from lab.report.scenario import junit
from lab.report.tables import verdict_table
from lab.scenario import sweep as sw

from .console import err, escape, hinted, out
from .runs import load_all, run_all, run_parallel, scenario_files
from .signals import interruptible


@interruptible()
def run(args) -> int:
    results = run_all(load_all(scenario_files(args.files), args.name, args.turn_backend), args.out)
    if args.json:
        print(json.dumps([r.to_dict() for r in results], indent=2))
    else:
        out.print(verdict_table(results))
        if args.out:
            out.print(f"reports in {escape(args.out)}/<scenario>/ (report.md, result.json, topology.svg)")
    return EXIT_OK if all(r.verdict == "pass" for r in results) else EXIT_FAIL


@interruptible()
def verify(args) -> int:
    files = scenario_files(args.paths or ["scenarios"])
    if args.k:
        files = [f for f in files if args.k in Path(f).stem]
    if not files:
        raise UsageError(hinted("no scenario files found" + (f" matching '{args.k}'" if args.k else ""),
                                "scenarios are YAML files in scenarios/"))
    scenarios = load_all(files, turn_backend=args.turn_backend)
    if args.parallel > 1:
        results = run_parallel(scenarios, args.parallel, args.out, args.turn_backend)
    else:
        results = run_all(scenarios, args.out)
    out.print(verdict_table(results))
    if args.junit:
        junit(results, args.junit, backend_in_names=bool(args.turn_backend))
        err.print(f"wrote {escape(args.junit)}")
    if args.out:
        err.print(f"wrote {escape(str(write_index(results, args.out)))} and summary.csv beside it")
    bad = [r for r in results if r.verdict != "pass"]
    out.print(f"{len(results) - len(bad)} passed, {len(bad)} failed"
              + (f" (TURN backend: {args.turn_backend})" if args.turn_backend else ""))
    return EXIT_FAIL if bad else EXIT_OK


@interruptible()
def sweep(args) -> int:
    (scenario,) = load_all([args.file], args.name)
    spec = scenario.sweep or {}
    params = sw.parse_params(args.param or spec.get("params") or [])
    link = sw.choose_link(scenario, args.link)
    call = sw.choose_call(scenario, args.call)
    direction = args.direction or spec.get("direction") or "both"

    def done(pt) -> None:
        what = pt.outcome + (f" ({pt.error})" if pt.error else "")
        setup = f", set-up {pt.setup:.2f} s" if pt.setup is not None else ""
        err.print(escape(f"{', '.join(f'{k}={v}' for k, v in pt.labels.items())}: {what}{setup} ({pt.wall:.1f} s)"))

    with err.status("starting") as status:
        result = sw.run_sweep(scenario, params, link, call, direction,
                              progress=lambda m: status.update(escape(m)), on_point=done)
    if args.json:
        print(json.dumps(result.to_dict(), indent=2))
    else:
        out.print(sweep_report.table(result))
    if args.out:
        d = sweep_report.write(result, Path(args.out))
        err.print(f"wrote {escape(str(d))}/sweep.png, sweep.svg, sweep.md, sweep.json")
    return EXIT_OK
