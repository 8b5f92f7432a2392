"""Routes computed from the graph.

The lab is a bipartite graph of nodes and subnets. A packet may enter a subnet from any
node on it, but may only leave a node onto another subnet if the node forwards (hosts do
not). For each destination subnet one Dijkstra run from it gives every node's next hop
(the forwarder on the node's own subnet that is one step closer). Each node's default route
points towards the ``internet`` node; specific routes are installed only where the next hop
differs from the default one, so routing tables stay short enough to read.

Dijkstra is written out here (as networkx's ``dijkstra_predecessor_and_distance`` does it,
with the same results) rather than imported: importing networkx costs `icelab validate`
about a third of its start-up.
"""

from __future__ import annotations

import heapq
from ipaddress import IPv4Network

from .firewall import ping_blocked
from .topology import DEFAULT_ROUTE, Node, Route, Subnet
from .vpn import tunnelled

Vertex = tuple          # ("n", node name) or ("s", subnet)
Graph = dict            # vertex -> {successor: weight}, successors in the order they were added


def _graph(nodes: dict[str, Node], subnets: list[Subnet], costs: dict[int, int]) -> Graph:
    g: Graph = {}
    for s in subnets:
        g.setdefault(("s", s.network), {})
    for node in nodes.values():
        if node.kind == "lan":
            continue
        out = g.setdefault(("n", node.name), {})
        for itf in node.interfaces:
            if itf.address is None:
                continue
            cost = costs.get(itf.link, 1)
            g.setdefault(("s", itf.subnet), {})[("n", node.name)] = cost
            if node.forwards:
                out[("s", itf.subnet)] = 0
    return g


def _predecessors(g: Graph, source: Vertex) -> dict[Vertex, list[Vertex]]:
    """Every vertex reachable from ``source``, with all its predecessors on shortest paths."""
    pred: dict[Vertex, list[Vertex]] = {source: []}
    dist: dict[Vertex, int] = {}
    seen = {source: 0}
    fringe = [(0, 0, source)]      # (distance, order pushed, vertex): ties pop in push order
    pushed = 1
    while fringe:
        d, _, v = heapq.heappop(fringe)
        if v in dist:
            continue
        dist[v] = d
        for u, cost in g.get(v, {}).items():
            vu = d + cost
            if u in dist:
                if vu == dist[u]:
                    pred[u].append(v)
            elif u not in seen or vu < seen[u]:
                seen[u] = vu
                heapq.heappush(fringe, (vu, pushed, u))
                pushed += 1
                pred[u] = [v]
            elif vu == seen[u]:
                pred[u].append(v)
    return pred


def _next_hops(g: Graph, source: Vertex, nodes: dict[str, Node]) -> dict[str, Route]:
    """For every node that can reach ``source``: its first hop (via, dev) towards it."""
    pred = _predecessors(g, source)
    hops: dict[str, Route] = {}
    for vertex in pred:
        if vertex[0] != "n":
            continue
        name = vertex[1]
        node = nodes[name]
        for subnet_v in sorted(pred[vertex], key=lambda v: (v[1].network_address, v[1].prefixlen)):
            routers = sorted(pred.get(subnet_v, []), key=lambda v: v[1])
            if not routers:          # the node is on the source subnet itself
                break
            router = nodes[routers[0][1]]
            via = router.interface_on(subnet_v[1])
            dev = node.interface_on(subnet_v[1])
            hops[name] = Route(DEFAULT_ROUTE, via.address.ip, dev.name)
            break
    return hops


def compute_routes(nodes: dict[str, Node], subnets: list[Subnet], internet: str | None,
                   costs: dict[int, int]) -> dict[IPv4Network, list[str]]:
    """Fill in ``routes`` of every node without static routes. Returns, for each subnet,
    the nodes that cannot reach it (the validator turns these into problems)."""
    g = _graph(nodes, subnets, costs)
    auto = [n for n in nodes.values() if n.kind != "lan" and not n.static_routes]
    default_hop: dict[str, Route] = {}
    if internet is not None:
        default_hop = _next_hops(g, ("n", internet), nodes)
    unreachable: dict[IPv4Network, list[str]] = {}
    table: dict[str, list[Route]] = {n.name: [] for n in auto}
    for s in subnets:
        hops = _next_hops(g, ("s", s.network), nodes)
        for node in auto:
            if node.interface_on(s.network):
                continue
            hop = hops.get(node.name)
            if hop is None:
                unreachable.setdefault(s.network, []).append(node.name)
                continue
            d = default_hop.get(node.name)
            if d is not None and (d.via, d.dev) == (hop.via, hop.dev):
                continue
            table[node.name].append(Route(s.network, hop.via, hop.dev))
    for node in auto:
        routes = []
        d = default_hop.get(node.name)
        if d is not None and node.name != internet:
            routes.append(d)
        routes += sorted(table[node.name], key=lambda r: (r.dest.network_address, r.dest.prefixlen))
        node.routes = routes
    return unreachable


def _owner(nodes: dict[str, Node], ip) -> tuple[Node, object] | None:
    for node in nodes.values():
        for itf in node.interfaces:
            if itf.address is not None and itf.address.ip == ip:
                return node, itf
    return None


def _lookup(node: Node, dst) -> tuple[object, str] | None:
    """(next hop or None for on-link, device) by longest prefix match, like the kernel."""
    best = None
    for itf in node.interfaces:
        if itf.subnet is not None and dst in itf.subnet:
            best = (itf.subnet.prefixlen, None, itf.name)
    for r in node.routes:
        if dst in r.dest and (best is None or r.dest.prefixlen > best[0]):
            best = (r.dest.prefixlen, r.via, r.dev)
    return None if best is None else (best[1], best[2])


def trace(nodes: dict[str, Node], src: str, dst) -> list[str] | None:
    """The nodes a packet from ``src`` to address ``dst`` crosses (src first, the
    destination's owner last), following the routing tables; None if it is dropped."""
    path = [src]
    node = nodes[src]
    for _ in range(64):
        if any(a.ip == dst for a in node.addresses):
            return path
        if len(path) > 1 and not node.forwards:
            return None
        hop = _lookup(node, dst)
        if hop is None:
            return None
        via, _dev = hop
        target = dst if via is None else via
        owner = _owner(nodes, target)
        if owner is None:
            return None
        node = owner[0]
        path.append(node.name)
    return None


def source_address(nodes: dict[str, Node], src: str, dst):
    """The address Linux would send from: the outgoing interface's."""
    node = nodes[src]
    hop = _lookup(node, dst)
    if hop is None:
        return None
    itf = next(i for i in node.interfaces if i.name == hop[1])
    return itf.address.ip if itf.address else None


def reachable(nodes: dict[str, Node], src: str, dst) -> bool:
    """Would a ping from ``src`` to ``dst`` get its answer? Both directions must route.
    A VPN client's tunnelled traffic leaves its concentrator masqueraded (lab/model/vpn.py),
    and a reply a client sends into its tunnel comes back from the wrong address."""
    back_from = _owner(nodes, dst)
    client = nodes[src]
    if tunnelled(client, dst):
        conc = client.vpn.concentrator
        if trace(nodes, src, client.vpn.remote) is None or trace(nodes, conc, dst) is None:
            return False
        nat = source_address(nodes, conc, dst)
        if back_from is None or nat is None:
            return False
        if back_from[0].name == conc:
            return True
        return not tunnelled(back_from[0], nat) and trace(nodes, back_from[0].name, nat) is not None
    if trace(nodes, src, dst) is None:
        return False
    if _policy_drops(nodes, src, dst):
        return False
    source = source_address(nodes, src, dst)
    if back_from is not None and source is not None and tunnelled(back_from[0], source):
        return False
    return back_from is not None and source is not None and trace(nodes, back_from[0].name, source) is not None


def hops(nodes: dict[str, Node], src: str, dst) -> list[tuple[str, str | None, str | None]] | None:
    """Like ``trace``, with interfaces: ``(node, in_interface, out_interface)`` for each node
    a packet from ``src`` to address ``dst`` crosses (no in_interface at the source, no
    out_interface at the destination). This is where captures along a path go."""
    out: list[tuple[str, str | None, str | None]] = []
    node, arrived = nodes[src], None
    for _ in range(64):
        if any(a.ip == dst for a in node.addresses):
            out.append((node.name, arrived, None))
            return out
        if out and not node.forwards:
            return None
        hop = _lookup(node, dst)
        if hop is None:
            return None
        via, dev = hop
        out.append((node.name, arrived, dev))
        owner = _owner(nodes, dst if via is None else via)
        if owner is None:
            return None
        node, arrived = owner[0], owner[1].name
    return None


def _policy_drops(nodes: dict[str, Node], src: str, dst) -> bool:
    """A firewall or nat on the way drops the ping (lab/model/firewall.py)."""
    path = trace(nodes, src, dst)
    return path is not None and ping_blocked(nodes, path)
