"""Commands on the network functions of a lab: check (who reaches whom), fw (a firewall's
rules and counters), nat-check (a NAT's behaviour, measured)."""

from __future__ import annotations

import json

from lab.core.errors import EXIT_FAIL, EXIT_OK, LabError
from lab.model import load_topology
from lab.net import Network, firewall, nat
from lab.net.natcheck import check as nat_behaviour
from lab.net.reach import measure, plan
from lab.report.tables import firewall_table, natcheck_lines, reach_table

from .console import Refused, err, escape, hinted, out
from .lookup import running_node
from .signals import interruptible


@interruptible()
def check(args) -> int:
    topo = load_topology(args.file, name=args.name)
    name = escape(topo.name)
    probes = plan(topo, ("host", "router") if args.routers else ("host",))
    network = Network(topo)
    try:
        with err.status(f"building lab '{name}'") as status:
            network.progress = lambda m: status.update(f"lab '{name}': {escape(m)}")
            network.build()
            status.update(f"lab '{name}': {len(probes)} pings")
            measure(network, probes)
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


def fw(args) -> int:
    _, ns = running_node(args.name, args.node)
    where = f"{escape(args.name)}/{escape(args.node)}"
    try:
        if args.action == "flush":
            nat.flush_conntrack(ns.pid)
            err.print(f"{where}: conntrack flushed")
            return EXIT_OK
        rules = firewall.counters(ns.pid)
    except RuntimeError as exc:      # nft or conntrack refused; its message says why
        raise LabError(str(exc)) from None
    if args.json:
        print(json.dumps({"lab": args.name, "node": args.node, "rules": [r.to_dict() for r in rules]}, indent=2))
    elif not rules:
        out.print(f"{where}: no rules with counters")
    else:
        out.print(firewall_table(args.name, args.node, rules))
        for r in rules:
            if r.peers:
                out.print(escape(r.sentence()))
    return EXIT_OK


def nat_check(args) -> int:
    st, _ = running_node(args.name, args.host)
    pids = {n: s.pid for n, s in st.nodes.items()}
    try:
        res = nat_behaviour(st.topology, pids, args.host, args.server)
    except (LookupError, RuntimeError, OSError) as exc:
        raise Refused(hinted(f"nat-check: {exc}", "the responder needs ports 3478 and 3479 free on both "
                                                  "addresses of its host (--server picks another host)")) from None
    if args.json:
        print(json.dumps(res.to_dict(), indent=2))
    else:
        for line in natcheck_lines(res):
            out.print(line)
    return EXIT_FAIL if res.ok is False else EXIT_OK
