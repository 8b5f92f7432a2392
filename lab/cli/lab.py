"""Commands on labs as a whole: up, down, status, exec, clean."""

from __future__ import annotations

import json
import os
import signal

from lab.core.errors import EXIT_OK
from lab.model import load_topology
from lab.net import Network, clean_all, clean_lab, orphans
from lab.net.owner import stop_owner
from lab.net.shell import interact
from lab.net.state import all_states
from lab.report.tables import status_rows, status_table, topology_table

from .console import Refused, err, escape, hinted, out
from .lookup import lab_state, running_node
from .signals import interruptible


@interruptible()
def up(args) -> int:
    topo = load_topology(args.file, name=args.name)
    name = escape(topo.name)
    network = Network(topo)
    is_up = False
    try:
        with err.status(f"building lab '{name}'") as status:
            network.progress = lambda m: status.update(f"lab '{name}': {escape(m)}")
            network.build()
        is_up = True
        out.print(topology_table(topo))
        hosts = topo.hosts()
        out.print(f"[green]lab '{name}' is up[/] ({len(topo.nodes)} nodes in {network.timings['total']:.2f} s). "
                  f"Try: icelab exec {name} {escape(hosts[0].name if hosts else next(iter(topo.nodes)))} -- ip route")
        if args.cli:
            interact(network)
        else:
            out.print(f"Ctrl-C here, or 'icelab down {name}' elsewhere, stops it.")
            while True:
                signal.pause()
    except BaseException as exc:
        if not is_up and network.state is not None:
            # half built: say so, not "is down" (it never was up), before the error says why
            with err.status(f"removing what was built of lab '{name}'"):
                network.teardown()
            # a signal travels as a BaseException that is no Exception (signals.py)
            why = "failed" if isinstance(exc, Exception) else "interrupted"
            err.print(f"lab '{name}' did not start ({why}); what was built of it is removed")
        raise
    finally:
        # nothing was built when `build` refused at once (a lab of that name already up):
        # then there is nothing to tear down and nothing to report
        if is_up:
            with err.status(f"tearing down lab '{name}'"):
                network.teardown()
            err.print(f"lab '{name}' is down")
    return EXIT_OK


def down(args) -> int:
    st = lab_state(args.name)
    stop_owner(st, on_kill=lambda pid: err.print(f"lab '{escape(args.name)}': owner {pid} did not stop; ending it"))
    if st.path.exists():
        c = clean_lab(args.name, st)
        err.print(f"lab '{escape(args.name)}': removed {c.processes} processes in {c.namespaces} namespaces")
    err.print(f"lab '{escape(args.name)}' is down")
    return EXIT_OK


def status(args) -> int:
    states = all_states()
    if args.json:
        print(json.dumps(status_rows(states), indent=2))
    elif not states:
        out.print("no labs are up")
    else:
        out.print(status_table(states))
    return EXIT_OK


def exec_(args) -> int:
    _, node = running_node(args.name, args.node)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    command = command or [os.environ.get("SHELL", "/bin/bash")]
    env = dict(os.environ, ICELAB_LAB=args.name, ICELAB_NODE=args.node)
    try:
        os.execvpe("nsenter", ["nsenter", "-t", str(node.pid), "-n", "--", *command], env)
    except FileNotFoundError:
        raise Refused(hinted("nsenter not found", "install util-linux")) from None


def clean(args) -> int:
    found = orphans()
    if not found:
        out.print("nothing to clean")
    elif args.dry_run:
        for name, st in sorted(found.items()):
            out.print(f"would clean lab '{escape(name)}'" + ("" if st else " (no state file; found by its marked processes)"))
    else:
        for c in clean_all():
            out.print(f"cleaned lab '{escape(c.lab)}': {c.processes} processes in {c.namespaces} namespaces ended"
                      + (", state removed" if c.state_file else ""))
    return EXIT_OK
