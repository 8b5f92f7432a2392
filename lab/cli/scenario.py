"""Commands that run scenarios: run, verify (a set, for CI; or one shard of it), merge (shards'
results as one set), sweep (one scenario over a grid of link settings). The work is in
lab/scenario; the reports in lab/report."""

from __future__ import annotations

import json
from pathlib import Path

from lab.core.errors import EXIT_FAIL, EXIT_OK, UsageError
from lab.report import sweep as sweep_report
from lab.report.index import write_index
from lab.report.merge import merge as merge_shards, merge_sweep_folders, sweep_shards
from lab.report.scenario import junit
from lab.report.tables import verdict_table
from lab.scenario import shard, sweep as sw
from lab.scenario.load import load_scenario

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
    durations = {}
    if args.shard or args.parallel > 1:         # what the split and the parallel order balance by
        durations = shard.load_durations(args.durations or shard.default_durations(args.paths or ["scenarios"]))
    k = None
    if args.shard:
        k, scenarios = _shard(scenarios, args, durations)
    if args.parallel > 1:
        results = run_parallel(scenarios, args.parallel, args.out, args.turn_backend, shard=k, durations=durations)
    else:
        results = run_all(scenarios, args.out)
    return _conclude(results, args.out, args.junit, bool(args.turn_backend),
                     f" (TURN backend: {args.turn_backend})" if args.turn_backend else "")


def _shard(scenarios: list, args, durations: dict[str, float]) -> tuple[int, list]:
    """This shard's part of the set; each scenario in a lab named after the shard, so that
    shards on one machine (as the tests run them) do not meet."""
    k, n = shard.parse_shard(args.shard)
    by_name = {s.name: s for s in scenarios}
    mine = shard.split(list(by_name), n, durations)[k - 1]
    err.print(f"shard {k}/{n}: {len(mine)} of {len(scenarios)} scenarios, about "
              f"{shard.expected(mine, durations):.0f} s of {shard.expected(list(by_name), durations):.0f} s")
    suffix = f"-s{k}"
    return k, [load_scenario(by_name[m].file, by_name[m].topology.name[:15 - len(suffix)] + suffix,
                             args.turn_backend) for m in mine]


def _conclude(results: list, out_dir: str | None, junit_file: str | None, backend_in_names: bool,
              note: str = "") -> int:
    out.print(verdict_table(results))
    if junit_file:
        junit(results, junit_file, backend_in_names=backend_in_names)
        err.print(f"wrote {escape(junit_file)}")
    if out_dir:
        index = write_index(results, out_dir)
        shard.write_durations({r.scenario.name: r.timings.get("total", 0.0) for r in results},
                              Path(out_dir) / "durations.json")
        err.print(f"wrote {escape(str(index))}, summary.csv and durations.json beside it")
    bad = [r for r in results if r.verdict != "pass"]
    out.print(f"{len(results) - len(bad)} passed, {len(bad)} failed" + note)
    return EXIT_FAIL if bad else EXIT_OK


def merge(args) -> int:
    """N shards' results as one set: exit 0 if every verdict is pass, as `verify` would. Sweep
    shards among the folders are merged into their sweeps (a sweep has no verdict to fail)."""
    swept = [f for f in args.folders if sweep_shards(f)]
    for d in merge_sweep_folders(swept, args.out):
        err.print(f"wrote {escape(str(d))}/sweep.png, sweep.svg, sweep.md, sweep.csv, sweep.json")
    sets = [f for f in args.folders if f not in swept or (Path(f) / "summary.csv").is_file()]
    if swept and not sets:
        return EXIT_OK
    results = merge_shards(sets, args.out)
    return _conclude(results, args.out, args.junit, args.backend_in_names)


@interruptible()
def sweep(args) -> int:
    (scenario,) = load_all([args.file], args.name)
    spec = scenario.sweep or {}
    params = sw.parse_params(args.param or spec.get("params") or [])
    link = sw.choose_link(scenario, args.link)
    call = sw.choose_call(scenario, args.call)
    direction = args.direction or spec.get("direction") or "both"
    part = shard.parse_shard(args.shard) if args.shard else None
    if part:
        count = len(sw.grid(params))
        err.print(f"shard {part[0]}/{part[1]}: {len(sw.shard_indices(count, *part))} of {count} points")

    def done(pt) -> None:
        what = pt.outcome + (f" ({pt.error})" if pt.error else "")
        setup = f", set-up {pt.setup:.2f} s" if pt.setup is not None else ""
        err.print(escape(f"{', '.join(f'{k}={v}' for k, v in pt.labels.items())}: {what}{setup} ({pt.wall:.1f} s)"))

    with err.status("starting") as status:
        if args.parallel < 1:
            raise UsageError(hinted(f"--parallel {args.parallel}: run at least one point at a time", "e.g. --parallel 2"))
        result = sw.run_sweep(scenario, params, link, call, direction,
                              progress=lambda m: status.update(escape(m)), on_point=done, parallel=args.parallel,
                              shard=part, fresh_labs=args.fresh_labs)
    if args.json:
        print(json.dumps(result.to_dict(), indent=2))
    else:
        out.print(sweep_report.table(result))
    if args.out:
        d = sweep_report.write(result, Path(args.out))
        if part:
            err.print(f"wrote {escape(str(d))}/sweep.json: put the {part[1]} shards together with "
                      f"`icelab merge DIR... -o OUT`")
        else:
            err.print(f"wrote {escape(str(d))}/sweep.png, sweep.svg, sweep.md, sweep.csv, sweep.json")
    return EXIT_OK
