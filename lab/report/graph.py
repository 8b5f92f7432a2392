"""A picture of a topology that a trainer could put on a slide: nodes, zones, subnets, addresses.

The layout reads like the path of a call: columns from the agents (left) towards the cloud
(right), each node in the column of its distance from the nearest agent workstation; nodes
of a column ordered by where their neighbours are, so lines cross as little as they can.
Zones are shaded boxes behind their nodes. Each interface's address stands next to its
node on the line it belongs to; a lan is a bar with its subnet, a point-to-point link carries
its subnet in the middle. ``.dot`` writes Graphviz text for people who prefer to lay it out
themselves.
"""

from __future__ import annotations

from pathlib import Path

import networkx as nx

from lab.model.topology import Node, Topology

STYLE = {   # kind -> (face colour, edge colour, box width, box height) in data units
    "agent": ("#dbeafe", "#1d4ed8", 1.5, 0.62),
    "server": ("#dcfce7", "#15803d", 1.5, 0.62),
    "router": ("#ffedd5", "#c2410c", 1.3, 0.55),
    "firewall": ("#fee2e2", "#b91c1c", 1.4, 0.6),
    "nat": ("#f3e8ff", "#7e22ce", 1.3, 0.55),
    "vpn": ("#e0f2fe", "#0369a1", 1.4, 0.6),
    "vdi": ("#fef9c3", "#a16207", 1.4, 0.6),
    "lan": ("#e5e7eb", "#4b5563", 0.22, 1.0),
}
ZONE_COLOURS = ["#eff6ff", "#fefce8", "#f0fdf4", "#fdf2f8", "#f5f3ff", "#ecfeff", "#fff7ed"]
COL_W, ROW_H = 3.0, 1.45


def render(topo: Topology, output: str | Path, mark: dict | None = None) -> Path:
    """``mark``: a path to draw over the links (``{"path": [node, ...]}``, lans between
    nodes found on their own) and where packets stopped on it (``"stopped_at": {"node": fw}``
    or ``{"link": [a, b]}``), as a scenario's report shows a failed call."""
    out = Path(output)
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix.lower() == ".dot":
        out.write_text(to_dot(topo))
    else:
        _draw(topo, out, mark)
    return out


def path_edges(topo: Topology, path: list[str]) -> set[frozenset]:
    """The links a path of nodes crosses, with the lans between consecutive nodes."""
    linked = {frozenset((l.a.node, l.b.node)) for l in topo.links}
    edges: set[frozenset] = set()
    for u, v in zip(path, path[1:]):
        if frozenset((u, v)) in linked:
            edges.add(frozenset((u, v)))
            continue
        for lan in (n.name for n in topo.nodes.values() if n.kind == "lan"):
            if frozenset((u, lan)) in linked and frozenset((lan, v)) in linked:
                edges |= {frozenset((u, lan)), frozenset((lan, v))}
                break
    return edges


def _style_key(node: Node) -> str:
    if node.kind == "host":
        return "agent" if node.role == "agent" else "server"
    return node.kind if node.kind in STYLE else "router"


def _subtitle(node: Node) -> str:
    if node.kind == "host":
        return ", ".join(node.services) if node.services else node.role or ""
    return node.kind


# -- layout --------------------------------------------------------------------------


def layout(topo: Topology) -> dict[str, tuple[float, float]]:
    """Node -> (x, y): x is the column (distance from the nearest agent), y the row."""
    g = nx.Graph()
    g.add_nodes_from(topo.nodes)
    g.add_edges_from((l.a.node, l.b.node) for l in topo.links)
    sources = [n.name for n in topo.nodes.values() if n.kind == "host" and n.role == "agent"]
    if not sources:
        sources = [next(iter(topo.nodes))]
    dist = nx.multi_source_dijkstra_path_length(g, sources)
    last = max(dist.values(), default=0) + 1
    layer = {n: dist.get(n, last) for n in topo.nodes}
    # A lan is a tall bar: it gets a column of its own, after the other nodes at its distance.
    slot, col = {}, 0
    for d in sorted(set(layer.values())):
        here = [n for n in topo.nodes if layer[n] == d]
        kinds = [topo.nodes[n].kind == "lan" for n in here]
        if any(kinds) and not all(kinds):
            slot[(d, False)], slot[(d, True)] = col, col + 1
            col += 2
        else:
            slot[(d, kinds[0])] = col
            col += 1
    columns: dict[int, list[str]] = {}
    for name in topo.nodes:     # file order inside a column, before ordering by neighbours
        columns.setdefault(slot[(layer[name], topo.nodes[name].kind == "lan")], []).append(name)
    row: dict[str, float] = {}
    x: dict[str, int] = {}
    for c in sorted(columns):
        names = columns[c]
        if c > 0:
            def barycentre(n: str, names=names) -> float:
                prev = [row[m] for m in g.neighbors(n) if m in row]
                return sum(prev) / len(prev) if prev else names.index(n)
            names.sort(key=barycentre)
        k = len(names)
        for i, n in enumerate(names):
            row[n] = (k - 1) / 2 - i
            x[n] = c
    return {n: (x[n] * COL_W, row[n] * ROW_H) for n in topo.nodes}


# -- matplotlib ----------------------------------------------------------------------


def _draw(topo: Topology, out: Path, mark: dict | None = None) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import FancyBboxPatch, PathPatch
    from matplotlib.path import Path as MPath

    plt.rcParams["svg.fonttype"] = "none"      # text stays text: searchable, editable on a slide
    pos = layout(topo)
    # lans are bars tall enough to take each member's line at the member's height
    bars: dict[str, tuple[float, float]] = {}
    for node in topo.nodes.values():
        if node.kind == "lan":
            y = pos[node.name][1]
            span = max([abs(pos[i.peer][1] - y) for i in node.interfaces] + [0.0])
            bars[node.name] = (y - span - 0.3, y + span + 0.3)

    xs = [p[0] for p in pos.values()]
    ys = [p[1] for p in pos.values()] + [v for b in bars.values() for v in b]
    width = max(xs) - min(xs) + COL_W * 1.3
    height = max(ys) - min(ys) + ROW_H * 2.2
    fig, ax = plt.subplots(figsize=(max(6.0, width * 1.05), max(3.5, height * 1.05)))
    ax.set_xlim(min(xs) - COL_W * 0.65, max(xs) + COL_W * 0.65)
    ax.set_ylim(min(ys) - ROW_H * 1.0, max(ys) + ROW_H * 1.2)
    ax.set_aspect("equal")
    ax.axis("off")

    # zones: shaded boxes behind their nodes
    zones: dict[str, list[str]] = {}
    for n in topo.nodes.values():
        if n.zone:
            zones.setdefault(n.zone, []).append(n.name)
    for i, (zone, names) in enumerate(zones.items()):
        zx = [pos[n][0] for n in names]
        zy = [pos[n][1] for n in names]
        x0, x1 = min(zx) - COL_W * 0.42, max(zx) + COL_W * 0.42
        y0, y1 = min(zy) - ROW_H * 0.62, max(zy) + ROW_H * 0.7
        ax.add_patch(FancyBboxPatch((x0, y0), x1 - x0, y1 - y0, boxstyle="round,pad=0.02,rounding_size=0.25",
                                    fc=ZONE_COLOURS[i % len(ZONE_COLOURS)], ec="#cbd5e1", lw=1, zorder=0))
        ax.text(x0 + 0.12, y1 - 0.1, zone, ha="left", va="top", fontsize=9, color="#475569",
                style="italic", zorder=1)

    def end(name: str, toward: tuple[float, float]) -> tuple[float, float]:
        x, y = pos[name]
        if name not in bars:
            return x, y
        lo, hi = bars[name]
        w = STYLE["lan"][2] / 2
        return (x - w if toward[0] < x else x + w), min(max(toward[1], lo + 0.1), hi - 0.1)

    on_path = path_edges(topo, mark["path"]) if mark and mark.get("path") else set()
    stop = (mark or {}).get("stopped_at") or {}
    stop_link = frozenset(stop["link"]) if "link" in stop else None

    # links, with each end's address next to its node and a p2p subnet in the middle
    for link in topo.links:
        pa, pb = pos[link.a.node], pos[link.b.node]
        (xa, ya), (xb, yb) = end(link.a.node, pb), end(link.b.node, pa)
        # A link that jumps over columns arcs above them, so it is not read as passing
        # through the nodes in between.
        span = abs(xb - xa) / COL_W
        cx, cy = (xa + xb) / 2, (ya + yb) / 2 + (0.55 * ROW_H * span if span > 1.5 else 0.0)

        def at(t: float, a=(xa, ya), b=(xb, yb), c=(cx, cy)) -> tuple[float, float]:
            return ((1 - t) ** 2 * a[0] + 2 * t * (1 - t) * c[0] + t * t * b[0],
                    (1 - t) ** 2 * a[1] + 2 * t * (1 - t) * c[1] + t * t * b[1])

        ax.add_patch(PathPatch(MPath([(xa, ya), (cx, cy), (xb, yb)], [MPath.MOVETO, MPath.CURVE3, MPath.CURVE3]),
                               fc="none", ec="#64748b", lw=1.4, zorder=2))
        if frozenset((link.a.node, link.b.node)) in on_path:       # the marked path, under the labels
            ax.add_patch(PathPatch(MPath([(xa, ya), (cx, cy), (xb, yb)], [MPath.MOVETO, MPath.CURVE3, MPath.CURVE3]),
                                   fc="none", ec="#2563eb", lw=4, alpha=0.55, zorder=2))
        if stop_link == frozenset((link.a.node, link.b.node)):
            mx, my = at(0.4)        # beside the subnet label in the middle
            ax.plot([mx], [my], marker="X", ms=16, color="#dc2626", mec="white", zorder=7)
        p2p = link.a.node not in bars and link.b.node not in bars
        # on a point-to-point link one end's address stands above the line, the other's below,
        # and the subnet on the line between them
        for itf, t, above in ((link.a, 0.27 if p2p else 0.36, True), (link.b, 0.73 if p2p else 0.64, not p2p)):
            if itf.address is None:
                continue
            tx, ty = at(t)
            ax.text(tx, ty + (0.07 if above else -0.07), f"{itf.name} {itf.address.ip}", ha="center",
                    va="bottom" if above else "top", fontsize=6.5, color="#334155", zorder=5,
                    bbox=dict(boxstyle="round,pad=0.1", fc="white", ec="none", alpha=0.85))
        if p2p:
            mx, my = at(0.5)
            ax.text(mx, my, str(link.subnet), ha="center", va="center",
                    fontsize=7, color="#0f172a", zorder=5,
                    bbox=dict(boxstyle="round,pad=0.15", fc="#f8fafc", ec="#94a3b8", lw=0.6))

    # nodes
    for node in topo.nodes.values():
        x, y = pos[node.name]
        face, edge, w, h = STYLE[_style_key(node)]
        if node.kind == "lan":
            lo, hi = bars[node.name]
            h = hi - lo
            ax.add_patch(FancyBboxPatch((x - w / 2, y - h / 2), w, h, boxstyle="round,pad=0.02,rounding_size=0.08",
                                        fc=face, ec=edge, lw=1.2, zorder=3))
            subnet = next((str(s.network) for s in topo.subnets if s.lan == node.name), "")
            ax.text(x, y + h / 2 + 0.08, node.name, ha="center", va="bottom", fontsize=8.5,
                    weight="bold", color="#111827", zorder=6)
            ax.text(x, y - h / 2 - 0.08, subnet, ha="center", va="top", fontsize=7.5, color="#111827",
                    zorder=6, bbox=dict(boxstyle="round,pad=0.15", fc="#f8fafc", ec="#94a3b8", lw=0.6))
            continue
        rounding = 0.27 if node.kind == "router" else 0.1
        ax.add_patch(FancyBboxPatch((x - w / 2, y - h / 2), w, h,
                                    boxstyle=f"round,pad=0.02,rounding_size={rounding}",
                                    fc=face, ec=edge, lw=1.6, zorder=4))
        ax.text(x, y + 0.08, node.name, ha="center", va="center", fontsize=9.5, weight="bold",
                color="#111827", zorder=6)
        sub = node.label or _subtitle(node)
        ax.text(x, y - 0.17, sub, ha="center", va="center", fontsize=6.8, color="#374151", zorder=6)
        if stop.get("node") == node.name:       # where the marked path's packets stopped
            ax.plot([x + w / 2], [y + h / 2], marker="X", ms=16, color="#dc2626", mec="white", zorder=7)
            ax.text(x, y + h / 2 + 0.12, mark.get("label", "packets stop here"), ha="center", va="bottom",
                    fontsize=7.5, color="#dc2626", weight="bold", zorder=7)

    title = f"lab {topo.name}" + (f": {topo.description}" if topo.description else "")
    ax.set_title(title, fontsize=11, loc="left", color="#0f172a")
    fig.tight_layout()
    fig.savefig(out, dpi=160 if out.suffix.lower() == ".png" else None)
    plt.close(fig)


# -- Graphviz text -------------------------------------------------------------------


def _q(text: str) -> str:
    return '"' + str(text).replace("\\", "\\\\").replace('"', '\\"') + '"'


def to_dot(topo: Topology) -> str:
    """Graphviz: zones as clusters, lans as boxes with their subnet, addresses on the edges."""
    shapes = {"lan": "box", "router": "ellipse", "host": "box"}
    lines = [f"graph {_q(topo.name)} {{", "  rankdir=LR;", '  node [fontname="Helvetica", fontsize=10];',
             '  edge [fontname="Helvetica", fontsize=8];']
    by_zone: dict[str | None, list[Node]] = {}
    for n in topo.nodes.values():
        by_zone.setdefault(n.zone, []).append(n)
    for i, (zone, nodes) in enumerate(by_zone.items()):
        indent = "  "
        if zone:
            lines.append(f"  subgraph cluster_{i} {{ label={_q(zone)}; style=rounded; color=gray;")
            indent = "    "
        for n in nodes:
            face, edge, _, _ = STYLE[_style_key(n)]
            if n.kind == "lan":
                subnet = next((str(s.network) for s in topo.subnets if s.lan == n.name), "")
                label = f"{n.name}\\n{subnet}"
            else:
                label = f"{n.name}\\n{n.label or _subtitle(n)}"
            lines.append(f"{indent}{_q(n.name)} [shape={shapes.get(n.kind, 'box')}, style=\"rounded,filled\", "
                         f"fillcolor={_q(face)}, color={_q(edge)}, label=\"{label}\"];")
        if zone:
            lines.append("  }")
    for l in topo.links:
        attrs = []
        if l.a.address:
            attrs.append(f"taillabel={_q(f'{l.a.name} {l.a.address.ip}')}")
        if l.b.address:
            attrs.append(f"headlabel={_q(f'{l.b.name} {l.b.address.ip}')}")
        if topo.nodes[l.a.node].kind != "lan" and topo.nodes[l.b.node].kind != "lan":
            attrs.append(f"label={_q(str(l.subnet))}")
        lines.append(f"  {_q(l.a.node)} -- {_q(l.b.node)} [{', '.join(attrs)}];")
    lines.append("}")
    return "\n".join(lines) + "\n"
