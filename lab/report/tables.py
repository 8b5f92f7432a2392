"""Tables people read in the terminal (rich), built from the resolved model, a lab's state and
results. Names and texts that come from files or the command line go through ``escape``: rich
would read ``[...]`` in them as markup."""

from __future__ import annotations

import time

from rich.markup import escape
from rich.table import Table

from lab.model.topology import Topology


def topology_table(topo: Topology) -> Table:
    t = Table(title=f"lab [bold]{escape(topo.name)}[/]" + (f" — {escape(topo.description)}" if topo.description else ""),
              title_justify="left", show_lines=False)
    t.add_column("node", style="bold")
    t.add_column("kind")
    t.add_column("interfaces")
    t.add_column("routes")
    t.add_column("services / role")
    for node in topo.nodes.values():
        if node.kind == "lan":
            subnet = next((s.network for s in topo.subnets if s.lan == node.name), "")
            itfs = f"bridge {node.name} {subnet}: " + ", ".join(i.name for i in node.interfaces)
        else:
            itfs = "\n".join(f"{i.name} {i.address} → {i.peer}" for i in node.interfaces)
        routes = escape("\n".join(str(r) for r in node.routes)) if node.kind != "lan" else ""
        if node.kind != "lan" and not node.routes:
            routes = "[dim]connected only[/]"
        what = ", ".join(node.services) if node.services else (node.role or "")
        kind = node.kind + (" (forwards)" if node.forwards else "")
        t.add_row(escape(node.name), kind, escape(itfs), routes, escape(what))
    return t


def status_table(states: list) -> Table:
    t = Table(title="icelab labs", title_justify="left")
    for col in ("lab", "status", "nodes", "owner pid", "up for", "file"):
        t.add_column(col)
    now = time.time()
    for st in states:
        status = st.status if st.owner_alive() else "[red]stale[/] (owner gone: icelab clean)"
        t.add_row(escape(st.name), status, str(len(st.nodes)), str(st.owner_pid), _age(now - st.created), escape(st.file))
    return t


def status_rows(states: list) -> list[dict]:
    """What status_table shows, for machines (`icelab status --json`)."""
    return [{"name": s.name, "status": s.status if s.owner_alive() else "stale", "file": s.file,
             "owner_pid": s.owner_pid, "created": s.created,
             "nodes": {k: {"pid": v.pid, "netns": v.netns} for k, v in s.nodes.items()},
             "topology": s.topology} for s in states]


def _age(seconds: float) -> str:
    s = int(seconds)
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60} s"
    return f"{s // 3600} h {s % 3600 // 60} min"


def reach_table(topo: Topology, probes: list) -> Table:
    """Rows: sources; columns: destinations. ✓ reached, · not reached (as expected),
    and a red mark where the measurement differs from what the topology says."""
    order = {name: i for i, name in enumerate(topo.nodes)}
    dsts = sorted(set(p.dst for p in probes), key=order.__getitem__)
    srcs = sorted(set(p.src for p in probes), key=order.__getitem__)
    t = Table(title=f"lab {escape(topo.name)}: who reaches whom (ping)", title_justify="left",
              caption="✓ reached   · not reached, as the routes say   [red]✗[/] expected but not reached   "
                      "[red]![/] reached but should not be", caption_justify="left")
    t.add_column("from \\ to", style="bold")
    for d in dsts:
        t.add_column(escape(d), justify="center")
    cell: dict[tuple[str, str], list] = {}
    for p in probes:
        cell.setdefault((p.src, p.dst), []).append(p)
    for s in srcs:
        row = [escape(s)]
        for d in dsts:
            ps = cell.get((s, d), [])
            if not ps:
                row.append("")
                continue
            marks = []
            for p in ps:
                if p.ok:
                    marks.append("[green]✓[/]" if p.measured else "[dim]·[/]")
                else:
                    marks.append("[red]✗[/]" if p.expected else "[red]![/]")
            row.append(" ".join(marks))
        t.add_row(*row)
    return t


MARK = {"pass": "[green]PASS[/]", "fail": "[red]FAIL[/]", "error": "[yellow]ERROR[/]"}


def verdict_table(results: list) -> Table:
    """One row per scenario; broken/fixed pairs next to each other."""
    t = Table(title="icelab scenarios", title_justify="left", show_lines=True)
    for col in ("scenario", "variant", "TURN", "verdict", "what was seen", "time"):
        t.add_column(col, overflow="fold")
    for r in sorted(results, key=lambda r: (r.scenario.pair or r.scenario.name, r.scenario.variant != "broken")):
        seen = "\n".join(f"{'✓' if c.status == 'pass' else '✗' if c.status == 'fail' else '?'} {c.title}: {c.observed}"
                         for c in r.checks)
        seen = escape(seen)
        if r.error:
            seen = f"[yellow]{escape(r.error)}[/]\n" + seen
        t.add_row(escape(r.scenario.name), escape(r.scenario.variant or ""), r.turn_backend or "-", MARK[r.verdict],
                  seen, f"{r.timings.get('total', 0):.1f} s")
    return t


def firewall_table(lab: str, node: str, rules: list) -> Table:
    """A firewall or NAT node's rules with what they counted (lab/net/firewall.py)."""
    t = Table(title=f"{escape(lab)} / {escape(node)}: rules and counters")
    for col in ("rule", "name", "chain", "packets", "bytes"):
        t.add_column(col, justify="right" if col in ("rule", "packets", "bytes") else "left")
    for r in rules:
        t.add_row(str(r.number) if r.number is not None else "-", escape(r.name), escape(f"{r.table}/{r.chain}"),
                  str(r.packets), str(r.bytes))
    return t


def links_table(lab: str, links: list) -> Table:
    """Every link's impairments per direction, with the shaper's counters (lab/net/shaping.py)."""
    t = Table(title=f"lab '{escape(lab)}': link impairments (one-way, per direction)")
    for col in ("link", "direction", "impairments", "packets (sent/lost/overflow/held)"):
        t.add_column(col)
    for l in links:
        for d, (src, dst) in (("a2b", (l.a, l.b)), ("b2a", (l.b, l.a))):
            imp = getattr(l, d)
            c = (l.counters or {}).get(d)
            counts = f"{c['sent']}/{c['lost']}/{c['overflow']}/{c['held']}" if c else ""
            t.add_row(str(l.index), escape(f"{src} -> {dst}"), "not shaped" if imp is None else escape(imp.describe()),
                      counts)
    return t


def doctor_table(found: list) -> Table:
    """What labs need and what this machine has (lab/net/doctor.py)."""
    t = Table(title="what labs need", title_justify="left")
    for col in ("", "what", "needed for", "found"):
        t.add_column(col, overflow="fold")
    for c in found:
        mark = "[green]ok[/]" if c.ok else "[red]missing[/]" if c.required else "[yellow]missing[/]"
        t.add_row(mark, escape(c.what), escape(c.needed_for + ("" if c.required else " (optional)")), escape(c.detail))
    return t


def natcheck_lines(res) -> list[str]:
    """A NAT's behaviour as declared and as measured (lab/net/natcheck.py), a line each."""
    d = res.declared
    behind = f"behind nat '{res.nat}' ({res.declared_type})" if res.nat else "behind no nat"
    lines = [escape(f"{res.host} {behind}; responder {res.server[0]} / {res.server[1]}"),
             escape(f"  mapping:   declared {d[0] if d else '-':28} measured {res.mapping}"),
             escape(f"  filtering: declared {d[1] if d else '-':28} measured {res.filtering}"),
             escape(f"  mapped addresses: {', '.join(res.mapped)}")]
    if res.ok is not None:
        lines.append("[green]as declared[/]" if res.ok else "[red]differs from the declaration[/]")
    return lines
