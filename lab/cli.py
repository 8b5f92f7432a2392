"""icelab's command line. Commands are thin: the work is in lab.model, lab.net, lab.report.

Exit status: 0 success, 1 the lab could not be built or reached, 2 bad input or usage.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from pathlib import Path

from rich.console import Console

from lab import __version__

# Tables are for people; piped into a log they should not wrap at 80 columns.
err = Console(stderr=True, highlight=False, width=None if sys.stderr.isatty() else 140)
out = Console(highlight=False, width=None if sys.stdout.isatty() else 140)

EXIT_OK, EXIT_FAIL, EXIT_INPUT = 0, 1, 2


class _Terminate(BaseException):
    """SIGTERM/SIGHUP, raised in the main thread so that cleanup runs like after Ctrl-C."""


def _raise_terminate(signum, _frame):
    raise _Terminate(signum)


def _print_problems(exc) -> None:
    for p in exc.problems:
        err.print(_problem_text(p), soft_wrap=True)
    n = len(exc.problems)
    err.print(f"[red]{n} problem{'s' if n != 1 else ''}; nothing was built[/]")


def _problem_text(p):
    from rich.text import Text
    where = p.file if p.line is None else f"{p.file}:{p.line}"
    t = Text()
    t.append(where + ": ", style="bold")
    if p.path:
        t.append(p.path + ": ", style="cyan")
    t.append(p.message, style="red")
    if p.hint:
        t.append("\n    hint: " + p.hint, style="yellow")
    return t


def _load(path: str, name: str | None = None):
    from lab.model import load_topology
    return load_topology(path, name=name)


# -- commands ----------------------------------------------------------------------


def cmd_validate(args) -> int:
    from lab.model import InputError
    results, bad = [], 0
    for f in args.files:
        try:
            topo = _load(f)
        except InputError as exc:
            bad += 1
            results.append({"file": f, "valid": False, "problems": [p.to_dict() for p in exc.problems]})
            if not args.json:
                _print_problems(exc)
            continue
        results.append({"file": f, "valid": True, "lab": topo.name, "nodes": len(topo.nodes),
                        "links": len(topo.links), "subnets": len(topo.subnets)})
        if not args.json:
            out.print(f"[green]✓[/] {f}: lab '{topo.name}', {len(topo.nodes)} nodes, "
                      f"{len(topo.links)} links, {len(topo.subnets)} subnets")
    if args.json:
        print(json.dumps(results, indent=2))
    return EXIT_INPUT if bad else EXIT_OK


def cmd_schema(args) -> int:
    if args.kind == "scenario":
        from lab.scenario.schema import json_schema
    else:
        from lab.model.schema import json_schema
    print(json.dumps(json_schema(), indent=2))
    return EXIT_OK


def cmd_graph(args) -> int:
    suffix = Path(args.output).suffix.lower()
    if suffix not in (".svg", ".png", ".dot"):
        err.print(f"[red]{args.output}: unknown picture format '{suffix}'[/]\n    hint: use .svg, .png or .dot")
        return EXIT_INPUT
    topo = _load(args.file)
    from lab.report.graph import render
    path = render(topo, args.output)
    err.print(f"wrote {path}")
    return EXIT_OK


def cmd_up(args) -> int:
    from lab.net import Network
    from lab.report.tables import topology_table
    topo = _load(args.file, args.name)
    signal.signal(signal.SIGTERM, _raise_terminate)
    signal.signal(signal.SIGHUP, _raise_terminate)
    network = Network(topo)
    try:
        with err.status(f"building lab '{topo.name}'") as status:
            network.progress = lambda m: status.update(f"lab '{topo.name}': {m}")
            network.build()
        out.print(topology_table(topo))
        out.print(f"[green]lab '{topo.name}' is up[/] ({len(topo.nodes)} nodes in "
                  f"{network.timings['total']:.2f} s). "
                  f"Try: icelab exec {topo.name} {_some_host(topo)} -- ip route")
        if args.cli:
            _mininet_cli(network)
        else:
            out.print(f"Ctrl-C here, or 'icelab down {topo.name}' elsewhere, stops it.")
            while True:
                signal.pause()
    except (KeyboardInterrupt, _Terminate):
        pass
    finally:
        with err.status(f"tearing down lab '{topo.name}'"):
            network.teardown()
        err.print(f"lab '{topo.name}' is down")
    return EXIT_OK


def _some_host(topo) -> str:
    hosts = topo.hosts()
    return hosts[0].name if hosts else next(iter(topo.nodes))


def _mininet_cli(network) -> None:
    from mininet.cli import CLI
    from mininet.log import output, setLogLevel

    class LabCLI(CLI):
        prompt = f"icelab:{network.topo.name}> "

        def do_nodes(self, _line):
            "List the lab's nodes by the names of the topology file."
            output("nodes: " + " ".join(network.nodes) + "\n")

    setLogLevel("info")
    # Mininet knows the nodes by their prefixed names; let people type the short ones.
    for short, node in network.nodes.items():
        network.net.nameToNode[short] = node
    LabCLI(network.net)


def cmd_check(args) -> int:
    from lab.net import Network
    from lab.net.reach import measure, plan
    from lab.report.tables import reach_table
    topo = _load(args.file, args.name)
    signal.signal(signal.SIGTERM, _raise_terminate)
    probes = plan(topo, ("host", "router") if args.routers else ("host",))
    network = Network(topo)
    try:
        with err.status(f"building lab '{topo.name}'") as status:
            network.progress = lambda m: status.update(f"lab '{topo.name}': {m}")
            network.build()
            status.update(f"lab '{topo.name}': {len(probes)} pings")
            measure(network, probes)
    except (KeyboardInterrupt, _Terminate):
        return 130
    finally:
        network.teardown()
    wrong = [p for p in probes if not p.ok]
    if args.json:
        print(json.dumps({"lab": topo.name, "build_s": round(network.timings.get("total", 0), 3),
                          "probes": [p.to_dict() for p in probes], "mismatches": len(wrong)}, indent=2))
    else:
        out.print(reach_table(topo, probes))
        if wrong:
            out.print(f"[red]{len(wrong)} of {len(probes)} probes differ from what the topology says[/]")
        else:
            out.print(f"[green]all {len(probes)} probes as the topology says[/] "
                      f"(built in {network.timings['total']:.2f} s)")
    return EXIT_FAIL if wrong else EXIT_OK


def cmd_down(args) -> int:
    from lab.net import clean_lab
    from lab.net.state import get
    st = get(args.name)
    if st is None:
        err.print(f"[red]no lab named '{args.name}' is up[/]\n    hint: 'icelab status' lists the labs")
        return EXIT_INPUT
    if st.owner_alive():
        os.kill(st.owner_pid, signal.SIGTERM)
        deadline = time.monotonic() + 20
        while st.owner_alive() and time.monotonic() < deadline:
            time.sleep(0.05)
        if st.owner_alive():
            err.print(f"lab '{args.name}': owner {st.owner_pid} did not stop; ending it")
            os.kill(st.owner_pid, signal.SIGKILL)
    if st.path.exists():
        c = clean_lab(args.name, st)
        err.print(f"lab '{args.name}': removed {c.processes} processes in {c.namespaces} namespaces")
    err.print(f"lab '{args.name}' is down")
    return EXIT_OK


def cmd_status(args) -> int:
    from lab.net.state import all_states
    from lab.report.tables import status_table
    states = all_states()
    if args.json:
        print(json.dumps([{"name": s.name, "status": s.status if s.owner_alive() else "stale",
                           "file": s.file, "owner_pid": s.owner_pid, "created": s.created,
                           "nodes": {k: {"pid": v.pid, "netns": v.netns} for k, v in s.nodes.items()},
                           "topology": s.topology} for s in states], indent=2))
        return EXIT_OK
    if not states:
        out.print("no labs are up")
        return EXIT_OK
    out.print(status_table(states))
    return EXIT_OK


def cmd_exec(args) -> int:
    found = _running_node(args.name, args.node)
    if isinstance(found, int):
        return found
    _, node = found
    command = args.command or [os.environ.get("SHELL", "/bin/bash")]
    env = dict(os.environ, ICELAB_LAB=args.name, ICELAB_NODE=args.node)
    try:
        os.execvpe("nsenter", ["nsenter", "-t", str(node.pid), "-n", "--", *command], env)
    except FileNotFoundError:
        err.print("[red]nsenter not found[/]\n    hint: install util-linux")
        return EXIT_FAIL


def cmd_call(args) -> int:
    """Place one softphone call from an agent of a running lab (the cloud registered
    ``adhoc-N`` calls for this when the lab was built)."""
    found = _running_node(args.name, args.agent)
    if isinstance(found, int):
        return found
    st, node = found
    calls = sorted((st.dir / "calls").glob("adhoc-*.json"), key=lambda p: int(p.stem.split("-")[1]))
    if not calls:
        err.print(f"[red]lab '{args.name}' has no call left to place[/]\n    hint: its topology needs hosts with the "
                  "turn and signalling services; a lab registers 20 calls: restart it for more")
        return EXIT_FAIL
    used = calls[0].with_suffix(".used")
    calls[0].rename(used)
    cfg = st.dir / f"agent-{args.agent}-{calls[0].stem}.json"
    cfg.write_text(json.dumps({"call": str(used), "ca": str(st.dir / "pki" / "ca.pem"), "talk_time": args.talk,
                               "profile": args.profile, "engine": args.engine, "mdns": args.mdns}))
    argv = ["nsenter", "-t", str(node.pid), "-n", "--", sys.executable, "-m", "lab.agent", "--config", str(cfg)]
    if not args.json:
        argv.append("--text")
    env = dict(os.environ, ICELAB_LAB=args.name, ICELAB_NODE=args.agent)
    import subprocess
    return subprocess.run(argv, env=env).returncode


def cmd_clean(args) -> int:
    from lab.net import clean_all, orphans
    found = orphans()
    if not found:
        out.print("nothing to clean")
        return EXIT_OK
    if args.dry_run:
        for name, st in sorted(found.items()):
            out.print(f"would clean lab '{name}'" + ("" if st else " (no state file; found by its marked processes)"))
        return EXIT_OK
    for c in clean_all():
        out.print(f"cleaned lab '{c.lab}': {c.processes} processes in {c.namespaces} namespaces ended"
                  + (", state removed" if c.state_file else ""))
    return EXIT_OK


def _scenario_files(paths: list[str]) -> list[str]:
    files = []
    for p in paths:
        path = Path(p)
        files += sorted(str(f) for f in path.glob("*.yaml")) if path.is_dir() else [p]
    return files


def _load_scenarios(files: list[str], lab: str | None = None, turn_backend: str | None = None):
    """Every scenario checked before anything is built; all problems of all files at once."""
    from lab.model import InputError
    from lab.scenario.load import load_scenario
    loaded, problems = [], []
    for f in files:
        try:
            loaded.append(load_scenario(f, lab, turn_backend))
        except InputError as exc:
            problems += exc.problems
    if problems:
        raise InputError(problems)
    return loaded


def _run_all(scenarios, args) -> list:
    from lab.scenario.runner import run_scenario, write_report
    signal.signal(signal.SIGTERM, _raise_terminate)
    signal.signal(signal.SIGHUP, _raise_terminate)
    results = []
    with err.status("starting") as status:
        for i, s in enumerate(scenarios, 1):
            status.update(f"[{i}/{len(scenarios)}] {s.name}: building lab '{s.topology.name}'")
            r = run_scenario(s, progress=lambda m, i=i: status.update(f"[{i}/{len(scenarios)}] {m}"),
                             out_dir=Path(args.out) if args.out else None)
            results.append(r)
            if args.out:
                d = write_report(r, Path(args.out))
                r.report_dir = str(d)
            mark = {"pass": "[green]PASS[/]", "fail": "[red]FAIL[/]", "error": "[yellow]ERROR[/]"}[r.verdict]
            err.print(f"{mark} {s.name} ({r.timings.get('total', 0):.1f} s)")
    return results


def cmd_run(args) -> int:
    from lab.report.scenario import verdict_table
    scenarios = _load_scenarios(_scenario_files(args.files), args.name, args.turn_backend)
    try:
        results = _run_all(scenarios, args)
    except (KeyboardInterrupt, _Terminate):
        return 130
    if args.json:
        print(json.dumps([r.to_dict() for r in results], indent=2))
    else:
        out.print(verdict_table(results))
        if args.out:
            out.print(f"reports in {args.out}/<scenario>/ (report.md, result.json, topology.svg)")
    return EXIT_OK if all(r.verdict == "pass" for r in results) else EXIT_FAIL


def _run_parallel(scenarios, args) -> list:
    """Each scenario in a child `icelab run` under a lab name of its worker slot, so labs of
    the same topology run side by side; results come back as JSON."""
    import queue
    import subprocess
    from concurrent.futures import ThreadPoolExecutor
    from lab.scenario.expect import Check
    from lab.scenario.runner import Event, Result

    signal.signal(signal.SIGTERM, _raise_terminate)
    slots: queue.Queue = queue.Queue()
    for i in range(args.parallel):
        slots.put(i)

    def one(s):
        slot = slots.get()
        lab = f"{s.topology.name[:11]}-p{slot}"
        try:
            argv = [sys.executable, "-m", "lab.cli", "run", s.file, "--name", lab, "--json", "-o", args.out or ""]
            if args.turn_backend:
                argv += ["--turn-backend", args.turn_backend]
            r = subprocess.run(argv, capture_output=True, text=True)
        finally:
            slots.put(slot)
        try:
            d = json.loads(r.stdout)[0]
        except (ValueError, IndexError):
            res = Result(s, lab, error=f"the run failed: {r.stderr.strip()[-300:]}")
            return res
        res = Result(s, lab, d["verdict"], [Check(**c) for c in d["checks"]], d["observations"],
                     [Event(**e) for e in d["events"]], d["timings"], d["error"], pcaps=d.get("pcaps", {}),
                     turn_backend=d.get("turn_backend"))
        mark = {"pass": "[green]PASS[/]", "fail": "[red]FAIL[/]", "error": "[yellow]ERROR[/]"}[res.verdict]
        err.print(f"{mark} {s.name} ({res.timings.get('total', 0):.1f} s, lab {lab})")
        return res

    with ThreadPoolExecutor(max_workers=args.parallel) as pool:
        return list(pool.map(one, scenarios))


def cmd_verify(args) -> int:
    from lab.report.scenario import junit, verdict_table
    files = _scenario_files(args.paths or ["scenarios"])
    if args.k:
        files = [f for f in files if args.k in Path(f).stem]
    if not files:
        err.print(f"[red]no scenario files found[/]" + (f" matching '{args.k}'" if args.k else "")
                  + "\n    hint: scenarios are YAML files in scenarios/")
        return EXIT_INPUT
    scenarios = _load_scenarios(files, turn_backend=args.turn_backend)
    try:
        results = _run_parallel(scenarios, args) if args.parallel > 1 else _run_all(scenarios, args)
    except (KeyboardInterrupt, _Terminate):
        return 130
    out.print(verdict_table(results))
    if args.junit:
        junit(results, args.junit, backend_in_names=bool(args.turn_backend))
        err.print(f"wrote {args.junit}")
    if args.out:
        from lab.report.index import write_index
        err.print(f"wrote {write_index(results, args.out)} and summary.csv beside it")
    bad = [r for r in results if r.verdict != "pass"]
    out.print(f"{len(results) - len(bad)} passed, {len(bad)} failed"
              + (f" (TURN backend: {args.turn_backend})" if args.turn_backend else ""))
    return EXIT_FAIL if bad else EXIT_OK
def cmd_sweep(args) -> int:
    """The work is in lab/scenario/sweep.py (running) and lab/report/sweep.py (table, plots)."""
    from lab.report import sweep as report
    from lab.scenario import sweep as sw
    (scenario,) = _load_scenarios([args.file], args.name)
    spec = scenario.sweep or {}
    params = sw.parse_params(args.param or spec.get("params") or [])
    link = sw.choose_link(scenario, args.link)
    call = sw.choose_call(scenario, args.call)
    direction = args.direction or spec.get("direction") or "both"
    signal.signal(signal.SIGTERM, _raise_terminate)
    signal.signal(signal.SIGHUP, _raise_terminate)
    try:
        with err.status("starting") as status:
            def done(pt):
                what = pt.outcome + (f" ({pt.error})" if pt.error else "")
                setup = f", set-up {pt.setup:.2f} s" if pt.setup is not None else ""
                err.print(f"{', '.join(f'{k}={v}' for k, v in pt.labels.items())}: {what}{setup} ({pt.wall:.1f} s)")
            result = sw.run_sweep(scenario, params, link, call, direction, progress=status.update, on_point=done)
    except (KeyboardInterrupt, _Terminate):
        return 130
    if args.json:
        print(json.dumps(result.to_dict(), indent=2))
    else:
        out.print(report.table(result))
    if args.out:
        d = report.write(result, Path(args.out))
        err.print(f"wrote {d}/sweep.png, sweep.svg, sweep.md, sweep.json")
    return EXIT_OK


def _running_node(lab: str, node: str):
    """(state, node state) of a running lab's node, or an exit status after saying why."""
    from lab.net import procs
    from lab.net.state import get
    st = get(lab)
    if st is None:
        err.print(f"[red]no lab named '{lab}' is up[/]\n    hint: 'icelab status' lists the labs")
        return EXIT_INPUT
    ns = st.nodes.get(node)
    if ns is None:
        from lab.core.errors import did_you_mean
        err.print(f"[red]lab '{lab}' has no node '{node}'[/]\n    hint: {did_you_mean(node, st.nodes, 'nodes')}")
        return EXIT_INPUT
    if not procs.alive(ns.pid, ns.started) or st.status != "running":
        err.print(f"[red]lab '{lab}' is not running (status {st.status})[/]")
        return EXIT_FAIL
    return st, ns


def cmd_fw(args) -> int:
    from lab.net import firewall, nat
    found = _running_node(args.name, args.node)
    if isinstance(found, int):
        return found
    st, ns = found
    if args.action == "flush":
        nat.flush_conntrack(ns.pid)
        err.print(f"{args.name}/{args.node}: conntrack flushed")
        return EXIT_OK
    rules = firewall.counters(ns.pid)
    if args.json:
        print(json.dumps({"lab": args.name, "node": args.node, "rules": [r.to_dict() for r in rules]}, indent=2))
        return EXIT_OK
    if not rules:
        out.print(f"{args.name}/{args.node}: no rules with counters")
        return EXIT_OK
    from rich.table import Table
    t = Table(title=f"{args.name} / {args.node}: rules and counters")
    for col in ("rule", "name", "chain", "packets", "bytes"):
        t.add_column(col, justify="right" if col in ("rule", "packets", "bytes") else "left")
    for r in rules:
        t.add_row(str(r.number) if r.number is not None else "-", r.name, f"{r.table}/{r.chain}",
                  str(r.packets), str(r.bytes))
    out.print(t)
    for r in rules:
        if r.peers:
            out.print(r.sentence())
    return EXIT_OK


def cmd_nat_check(args) -> int:
    from lab.net.natcheck import check
    found = _running_node(args.name, args.host)
    if isinstance(found, int):
        return found
    st, _ = found
    pids = {n: s.pid for n, s in st.nodes.items()}
    try:
        res = check(st.topology, pids, args.host, args.server)
    except (LookupError, RuntimeError, OSError) as exc:
        err.print(f"[red]nat-check: {exc}[/]\n    hint: the responder needs ports 3478 and 3479 free on both "
                  "addresses of its host (--server picks another host)")
        return EXIT_FAIL
    if args.json:
        print(json.dumps(res.to_dict(), indent=2))
    else:
        d = res.declared
        behind = f"behind nat '{res.nat}' ({res.declared_type})" if res.nat else "behind no nat"
        out.print(f"{res.host} {behind}; responder {res.server[0]} / {res.server[1]}")
        out.print(f"  mapping:   declared {d[0] if d else '-':28} measured {res.mapping}")
        out.print(f"  filtering: declared {d[1] if d else '-':28} measured {res.filtering}")
        out.print(f"  mapped addresses: {', '.join(res.mapped)}")
        if res.ok is not None:
            out.print("[green]as declared[/]" if res.ok else "[red]differs from the declaration[/]")
    return EXIT_FAIL if res.ok is False else EXIT_OK
def cmd_link_set(args) -> int:
    from lab.net.shaping import ShapingError, change_impairment
    settings: dict = {}
    for key in ("delay", "jitter", "distribution", "rate", "queue", "duplicate", "reorder"):
        if getattr(args, key) is not None:
            settings[key] = getattr(args, key)
    if args.loss is not None:
        settings["loss"] = {"mean": args.loss, "burst": args.burst} if args.burst is not None else args.loss
    elif args.burst is not None:
        err.print("[red]--burst needs --loss (the mean loss)[/]\n    hint: e.g. --loss 5% --burst 4")
        return EXIT_INPUT
    if not settings and not args.clear:
        err.print("[red]nothing to set[/]\n    hint: give --delay, --jitter, --loss, --rate ... or --clear")
        return EXIT_INPUT
    flag = lambda k: "--burst" if k == "burst" else f"--{k}"
    try:
        new = change_impairment(args.name, args.a, args.b, settings, args.direction, clear=args.clear,
                                origin="icelab link set", rename=flag)
    except ShapingError as exc:
        err.print(f"[red]{exc}[/]")
        return EXIT_INPUT if "no lab" in str(exc) or "no link" in str(exc) or "has no node" in str(exc) else EXIT_FAIL
    for d, imp in new.items():
        src, dst = (args.a, args.b) if d == "a2b" else (args.b, args.a)
        out.print(f"{src} -> {dst}: {imp.describe()}")
    return EXIT_OK


def cmd_link_show(args) -> int:
    from lab.net.shaping import ShapingError, show
    from rich.table import Table
    try:
        links = show(args.name)
    except ShapingError as exc:
        err.print(f"[red]{exc}[/]\n    hint: 'icelab status' lists the labs")
        return EXIT_INPUT
    if args.json:
        print(json.dumps([l.to_dict() for l in links], indent=2))
        return EXIT_OK
    from lab.net.shaping import backend, shaper_running
    if any(l.a2b or l.b2a for l in links) and backend().name == "shaper" and not shaper_running(args.name):
        err.print(f"[red]the shaper of lab '{args.name}' is not running: its impaired links do not forward[/]")
    t = Table(title=f"lab '{args.name}': link impairments (one-way, per direction)")
    for col in ("link", "direction", "impairments", "packets (sent/lost/overflow/held)"):
        t.add_column(col)
    for l in links:
        for d, (src, dst) in (("a2b", (l.a, l.b)), ("b2a", (l.b, l.a))):
            imp = getattr(l, d)
            c = (l.counters or {}).get(d)
            counts = f"{c['sent']}/{c['lost']}/{c['overflow']}/{c['held']}" if c else ""
            t.add_row(str(l.index), f"{src} -> {dst}", "not shaped" if imp is None else imp.describe(), counts)
    out.print(t)
    return EXIT_OK


def cmd_doctor(args) -> int:
    from lab.net.doctor import checks
    from lab.net.shaping import ShapingError, backend, netem_available, shaper_requirements
    found = checks()
    ok = all(c.ok for c in found if c.required)
    have, why = netem_available()
    try:
        be, be_error = backend(), None
    except ShapingError as exc:
        be, be_error = None, str(exc)
    needs = shaper_requirements() if be is None or be.name == "shaper" else []
    ok &= be is not None and all(good for _, good, _ in needs)
    if args.json:
        print(json.dumps({"ok": ok, "checks": [c.to_dict() for c in found],
                          "impairments": {"netem": have, "netem_why": why, "backend": be and be.name,
                                          "reason": be.reason if be else be_error,
                                          "requirements": [{"what": w, "ok": g, "detail": d} for w, g, d in needs]}},
                         indent=2))
        return EXIT_OK if ok else EXIT_FAIL
    from rich.table import Table
    t = Table(title="what labs need", title_justify="left")
    for col in ("", "what", "needed for", "found"):
        t.add_column(col, overflow="fold")
    for c in found:
        mark = "[green]ok[/]" if c.ok else "[red]missing[/]" if c.required else "[yellow]missing[/]"
        t.add_row(mark, c.what, c.needed_for + ("" if c.required else " (optional)"), c.detail)
    out.print(t)
    out.print(f"netem: {'available' if have else 'not available'}: {why}")
    if be is None:
        out.print(f"[red]link impairments: {be_error}[/]")
    else:
        out.print(f"[bold]link impairments: {'netem' if be.name == 'netem' else 'the lab shaper (NFQUEUE)'}[/], because {be.reason}")
    for what, good, detail in needs:
        out.print(f"  {'[green]ok[/]' if good else '[red]missing[/]'}  {what}: {detail}")
    if not ok:
        out.print("[red]something labs need is missing: run 'sudo make setup'[/]")
    return EXIT_OK if ok else EXIT_FAIL


# -- parser ------------------------------------------------------------------------


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="icelab", description="Network emulation lab for WebRTC softphone failures.")
    p.add_argument("--version", action="version", version=f"icelab {__version__}")
    sub = p.add_subparsers(dest="cmd", required=True, metavar="COMMAND")

    s = sub.add_parser("validate", help="check topology files; every problem with file, line, path and hint")
    s.add_argument("files", nargs="+", metavar="FILE")
    s.add_argument("--json", action="store_true", help="machine-readable result")
    s.set_defaults(func=cmd_validate)

    s = sub.add_parser("schema", help="print the topology's or the scenario's JSON Schema (for editors)")
    s.add_argument("kind", nargs="?", choices=["topology", "scenario"], default="topology")
    s.set_defaults(func=cmd_schema)

    s = sub.add_parser("graph", help="draw a topology: -o out.svg, out.png or out.dot")
    s.add_argument("file", metavar="FILE")
    s.add_argument("-o", "--output", required=True, metavar="OUT")
    s.set_defaults(func=cmd_graph)

    s = sub.add_parser("up", help="build a lab and keep it up until Ctrl-C (needs root)")
    s.add_argument("file", metavar="FILE")
    s.add_argument("--name", help="run under another lab name (two copies side by side)")
    s.add_argument("--cli", action="store_true", help="open Mininet's CLI; leaving it stops the lab")
    s.set_defaults(func=cmd_up)

    s = sub.add_parser("check", help="build a lab, ping between all hosts, compare with the model, tear down")
    s.add_argument("file", metavar="FILE")
    s.add_argument("--name", help="run under another lab name")
    s.add_argument("--routers", action="store_true", help="also ping every router address")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_check)

    s = sub.add_parser("down", help="stop a running lab")
    s.add_argument("name", metavar="NAME")
    s.set_defaults(func=cmd_down)

    s = sub.add_parser("status", help="list the labs that are up")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_status)

    s = sub.add_parser("exec", help="run a command in a lab node's network namespace")
    s.add_argument("name", metavar="NAME")
    s.add_argument("node", metavar="NODE")
    s.add_argument("command", nargs=argparse.REMAINDER, metavar="-- CMD")
    s.set_defaults(func=cmd_exec)

    s = sub.add_parser("call", help="place a softphone call from an agent of a running lab; print its timeline")
    s.add_argument("name", metavar="LAB")
    s.add_argument("agent", metavar="AGENT")
    s.add_argument("--talk", type=float, default=3.0, help="seconds in Talking before hanging up (default 3)")
    s.add_argument("--profile", choices=["chrome", "aiortc-default"], default="chrome")
    s.add_argument("--engine", choices=["emulated", "chromium"], default="emulated",
                   help="emulated: the lab's softphone (default); chromium: the real connect-rtc-js in headless Chromium")
    s.add_argument("--mdns", action="store_true", help="name host candidates <uuid>.local, as Chrome's mDNS option does")
    s.add_argument("--json", action="store_true", help="the timeline as JSON lines, then the outcome")
    s.set_defaults(func=cmd_call)

    s = sub.add_parser("run", help="run scenarios: build, play the timeline, check expectations, tear down")
    s.add_argument("files", nargs="+", metavar="SCENARIO", help="scenario files or folders of them")
    s.add_argument("--name", help="run under another lab name")
    s.add_argument("-o", "--out", default="out", help="report folder (default: out/); '' for none")
    s.add_argument("--json", action="store_true", help="results as JSON on stdout")
    s.add_argument("--turn-backend", choices=("embedded", "coturn"),
                   help="run every scenario's TURN server on this backend, whatever its topology says")
    s.set_defaults(func=cmd_run)

    s = sub.add_parser("verify", help="run a set of scenarios: exit 0 if every verdict is pass, else 1")
    s.add_argument("paths", nargs="*", metavar="DIR", help="scenario folders or files (default: scenarios/)")
    s.add_argument("-k", metavar="TEXT", help="only scenarios whose file name contains TEXT")
    s.add_argument("--junit", metavar="FILE", help="write JUnit XML for CI")
    s.add_argument("--parallel", type=int, default=1, metavar="N",
                   help="run N scenarios at once, each in a lab of its own name")
    s.add_argument("-o", "--out", default="out", help="report folder (default: out/)")
    s.add_argument("--turn-backend", choices=("embedded", "coturn"),
                   help="run the whole set against this TURN backend, whatever the scenarios' topologies say")
    s.set_defaults(func=cmd_verify)

    s = sub.add_parser("sweep", help="run a scenario over a grid of link settings; plot set-up time and outcome")
    s.add_argument("file", metavar="SCENARIO")
    s.add_argument("--param", action="append", metavar="link.FIELD=VALUES",
                   help="link.delay=0..400ms/9, link.loss=0%%,5%%,20%% (at most two; default: the scenario's sweep.params)")
    s.add_argument("--link", metavar="A-B", help="the swept link (default: the scenario's sweep: section, "
                                                  "else the link of its first link step)")
    s.add_argument("--direction", choices=("both", "a2b", "b2a"), help="the swept direction (default both)")
    s.add_argument("--call", metavar="NAME", help="the call to time (default: the scenario's first)")
    s.add_argument("--name", help="run under another lab name")
    s.add_argument("-o", "--out", default="out", help="folder for sweep-<scenario>/ (default: out/); '' for none")
    s.add_argument("--json", action="store_true", help="the sweep as JSON on stdout")
    s.set_defaults(func=cmd_sweep)

    s = sub.add_parser("fw", help="a firewall/nat node's rules with packet counters; or flush its conntrack")
    s.add_argument("action", choices=["show", "flush"], help="show: rules and counters; flush: forget connections")
    s.add_argument("name", metavar="LAB")
    s.add_argument("node", metavar="NODE")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_fw)

    s = sub.add_parser("nat-check", help="discover a host's NAT mapping and filtering (RFC 5780), declared vs measured")
    s.add_argument("name", metavar="LAB")
    s.add_argument("host", metavar="HOST")
    s.add_argument("--server", help="host with two addresses to run the responder on (default: the first found)")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_nat_check)
    s = sub.add_parser("link", help="link impairments of a running lab: 'link set', 'link show'")
    lsub = s.add_subparsers(dest="link_cmd", required=True, metavar="ACTION")
    ls = lsub.add_parser("set", help="change impairments: icelab link set LAB A B --delay 120ms --loss 2%%")
    ls.add_argument("name", metavar="LAB")
    ls.add_argument("a", metavar="A", help="one end of the link")
    ls.add_argument("b", metavar="B", help="the other end")
    ls.add_argument("--direction", choices=("both", "a2b", "b2a"), default="both",
                    help="a2b: from A to B as named here (default both)")
    ls.add_argument("--delay", help="one-way delay: 120ms, 0.2s")
    ls.add_argument("--jitter", help="standard deviation of the delay: 5ms")
    ls.add_argument("--distribution", help="of the jitter: normal, uniform, pareto, paretonormal")
    ls.add_argument("--loss", help="random loss: 2%%; with --burst the mean of bursty loss")
    ls.add_argument("--burst", type=float, help="mean loss burst length in packets (Gilbert-Elliott)")
    ls.add_argument("--rate", help="rate limit: 1mbit, 100kbit")
    ls.add_argument("--queue", type=int, help="packets that may wait for the rate limit")
    ls.add_argument("--duplicate", help="share of packets sent twice: 1%%")
    ls.add_argument("--reorder", help="share of packets that skip the delay: 10%%")
    ls.add_argument("--clear", action="store_true", help="start from no impairment instead of the current ones")
    ls.set_defaults(func=cmd_link_set)
    ls = lsub.add_parser("show", help="every link's impairments and counters")
    ls.add_argument("name", metavar="LAB")
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(func=cmd_link_show)

    s = sub.add_parser("doctor", help="what this machine has of what labs need, and the link impairment backend")
    s.add_argument("--json", action="store_true", help="machine-readable result")
    s.set_defaults(func=cmd_doctor)

    s = sub.add_parser("clean", help="remove what killed labs left behind, and nothing else")
    s.add_argument("--dry-run", action="store_true", help="only say what would be removed")
    s.set_defaults(func=cmd_clean)
    return p


def main(argv: list[str] | None = None) -> int:
    from lab.model import InputError
    from lab.core.errors import LabError
    args = parser().parse_args(argv)
    if isinstance(getattr(args, "command", None), list) and args.command[:1] == ["--"]:
        args.command = args.command[1:]
    try:
        return args.func(args)
    except InputError as exc:
        _print_problems(exc)
        return EXIT_INPUT
    except LabError as exc:
        err.print(f"[red]error:[/] {exc}")
        return EXIT_FAIL
    except BrokenPipeError:
        # the reader went away (`icelab ... | head`): not an error of ours; stop writing quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
