"""Tables people read in the terminal (rich), built from the resolved model and state."""

from __future__ import annotations

import time

from rich.table import Table

from lab.model.topology import Topology


def topology_table(topo: Topology) -> Table:
    t = Table(title=f"lab [bold]{topo.name}[/]" + (f" — {topo.description}" if topo.description else ""),
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
        routes = "\n".join(str(r) for r in node.routes) if node.kind != "lan" else ""
        if node.kind != "lan" and not node.routes:
            routes = "[dim]connected only[/]"
        what = ", ".join(node.services) if node.services else (node.role or "")
        kind = node.kind + (" (forwards)" if node.forwards else "")
        t.add_row(node.name, kind, itfs, routes, what)
    return t


def status_table(states: list) -> Table:
    t = Table(title="icelab labs", title_justify="left")
    for col in ("lab", "status", "nodes", "owner pid", "up for", "file"):
        t.add_column(col)
    now = time.time()
    for st in states:
        status = st.status if st.owner_alive() else "[red]stale[/] (owner gone: icelab clean)"
        t.add_row(st.name, status, str(len(st.nodes)), str(st.owner_pid), _age(now - st.created), st.file)
    return t


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
    t = Table(title=f"lab {topo.name}: who reaches whom (ping)", title_justify="left",
              caption="✓ reached   · not reached, as the routes say   [red]✗[/] expected but not reached   "
                      "[red]![/] reached but should not be", caption_justify="left")
    t.add_column("from \\ to", style="bold")
    for d in dsts:
        t.add_column(d, justify="center")
    cell: dict[tuple[str, str], list] = {}
    for p in probes:
        cell.setdefault((p.src, p.dst), []).append(p)
    for s in srcs:
        row = [s]
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
