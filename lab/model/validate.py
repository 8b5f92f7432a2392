"""From a parsed file to a resolved Topology, collecting every problem on the way.

Order: names, links, subnets, addresses, interface names, services, routes, reachability.
A step that depends on an item that already failed skips that item rather than piling up
follow-on errors, so each problem in the file is reported once, at its own place.
"""

from __future__ import annotations

import ipaddress
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

from . import schema
from .addressing import (ALLOWED_TEXT, DEFAULT_POOLS, PoolAllocator, allocate_hosts, host_count,
                         in_allowed_range, parse_address, parse_prefix)
from lab.core.errors import InputError, Problem, did_you_mean, format_path
from lab.core.names import IFNAME_RE, MAX_NAME, RESERVED_NAMES, check_name, default_ifname
from .firewall import PolicyResolver, parse_ephemeral
from .impairment import parse_link_impair
from .loader import Located, load_yaml
from . import groups, vdi, vpn
from .routing import compute_routes, reachable, trace
from .turn import check_faults
from .topology import DEFAULT_ROUTE, Interface, Link, Node, Route, Subnet, Topology


def load_topology(path: str | Path, name: str | None = None, text: str | None = None) -> Topology:
    """Read, check and resolve a topology file. Raises InputError with every problem."""
    return resolve(load_yaml(path, text), name)


def resolve(doc: Located, name: str | None = None) -> Topology:
    """Check and resolve a topology document already read (a scenario's, with its overrides)."""
    doc, problems = groups.expand(doc)
    parsed, more = schema.parse(doc)
    problems += more
    if parsed is None:
        raise InputError(_once(problems))
    topo, more = Resolver(doc, parsed, name, structure_ok=not problems).run()
    problems += more
    if problems:
        problems = _once(problems)
        problems.sort(key=lambda p: (p.file, p.line or 0))
        raise InputError(problems)
    assert topo is not None
    topo.groups = dict(getattr(doc, "members", {}))
    return topo


def _once(problems: list[Problem]) -> list[Problem]:
    """Each problem once: a group's members share theirs, reported at the group."""
    return list(dict.fromkeys(problems))


class Resolver:
    def __init__(self, doc: Located, parsed: schema.Topology, name: str | None, structure_ok: bool = True):
        self.doc = doc
        self.t = parsed
        self.name_override = name
        self.problems: list[Problem] = []
        # Items whose structure is broken were left out of ``parsed`` and reported already:
        # checks that need the whole lab (links to them, routes, reachability) must not
        # report what follows from their absence.
        self.structure_ok = structure_ok
        self.declared = set(doc.data.get("nodes") or {}) if isinstance(doc.data, dict) else set()

    @property
    def complete(self) -> bool:
        return self.structure_ok and not self.problems

    def err(self, path: tuple, message: str, hint: str | None = None) -> None:
        self.problems.append(self.doc.problem(path, message, hint))

    # -- steps --------------------------------------------------------------------

    def run(self) -> tuple[Topology | None, list[Problem]]:
        lab = self.name_override or self.t.name
        msg, hint = check_name(lab, "lab name")
        if msg:
            if self.name_override:
                self.problems.append(Problem(self.doc.file, "--name", msg, hint))
            else:
                self.err(("name",), msg, hint)
        self.nodes = self._nodes()
        self.pools = self._pools()
        self.links = self._links()
        if self.t.internet is not None:
            n = self.nodes.get(self.t.internet)
            if self.t.internet not in self.declared:
                self.err(("internet",), f"unknown node '{self.t.internet}'",
                         did_you_mean(self.t.internet, self.declared, "nodes"))
            elif n is not None and not n.forwards:
                self.err(("internet",), f"'{self.t.internet}' is a {n.kind}; default routes must point to a router",
                         "name the router at the edge of the internet (the ISP or backbone router)")
        subnets = self._subnets()
        self._addresses(subnets)
        self._ifnames()
        self._services()
        self._policies()
        self._service_options()
        subnet_list = list(subnets.values())
        vpn.resolve(self, subnet_list)
        vdi.resolve(self)
        if not self.complete:
            return None, self.problems
        self._static_routes()
        if not self.complete:
            return None, self.problems
        costs = {i: l["cost"] for i, l in enumerate(self.links) if l is not None}
        unreachable = compute_routes(self.nodes, subnet_list, self.t.internet, costs)
        for net, who in unreachable.items():
            s = subnets_by_net(subnet_list)[net]
            where = ("nodes", s.lan) if s.lan else ("links", s.links[0])
            names = ", ".join(who[:6]) + (f" and {len(who) - 6} more" if len(who) > 6 else "")
            self.err(where, f"subnet {net} ({s.label}) is unreachable from {names}",
                     "connect it through a router (hosts do not forward), or give those nodes static routes")
        for client, conc, _why in vpn.attach_remotes(self.nodes, trace):
            self.err(("nodes", client, "vpn", "concentrator"), f"'{client}' has no route to '{conc}' outside the tunnel",
                     "the tunnel runs over the lab's routed network: link both to it")
        for client, desktop in vdi.attach_addresses(self.nodes, reachable):
            self.err(("nodes", client, "vdi", "desktop"), f"'{client}' cannot reach the virtual desktop '{desktop}'",
                     "the display protocol needs a routed path both ways (a full-tunnel VPN client reaches it through the tunnel)")
        if self.problems:
            return None, self.problems
        topo_links = []
        for i, l in enumerate(self.links):
            topo_links.append(Link(i, l["ia"], l["ib"], l["subnet"], l["cost"], impair=l["impair"]))
        return Topology(lab, self.doc.file, self.t.description, self.t.internet, self.nodes,
                        topo_links, subnet_list, services=self.t.services.model_dump()), []

    def _nodes(self) -> dict[str, Node]:
        nodes: dict[str, Node] = {}
        for name, spec in self.t.nodes.items():
            msg, hint = check_name(name, "node name")
            if msg:
                self.err(("nodes", name), msg, hint)
            node = Node(name, spec.kind, label=spec.label, zone=spec.zone)
            if isinstance(spec, schema.HostNode):
                node.role = spec.role
                node.services = list(dict.fromkeys(spec.services))
                node.ephemeral_ports = parse_ephemeral(spec.os, spec.ephemeral_ports, self.err, ("nodes", name))
            nodes[name] = node
        return nodes

    def _pools(self) -> dict[str, tuple[IPv4Network, int]]:
        pools = dict(DEFAULT_POOLS)
        for name, p in self.t.pools.items():
            net, msg, hint = parse_prefix(p.prefix)
            if msg:
                self.err(("pools", name, "prefix"), msg, hint)
                continue
            if not in_allowed_range(net):
                self.err(("pools", name, "prefix"), f"{net} is not a {ALLOWED_TEXT} range",
                         "labs must not use real public addresses; take one of those ranges")
                continue
            if not net.prefixlen <= p.size <= 30:
                self.err(("pools", name, "size"), f"size /{p.size} does not fit in {net}",
                         f"choose a size from {net.prefixlen} to 30")
                continue
            pools[name] = (net, p.size)
        return pools

    def _links(self) -> list[dict | None]:
        """Normalised links: {'a': node, 'b': node, 'ep': {...}} or None when broken."""
        out: list[dict | None] = []
        lan_members: dict[tuple[str, str], int] = {}
        for i, link in enumerate(self.t.links):
            if link is None:
                out.append(None)
                continue
            ends = {}
            ok = True
            for side in ("a", "b"):
                ep = link.a if side == "a" else link.b
                ep = schema.Endpoint(node=ep) if isinstance(ep, str) else ep
                path = ("links", i, side) if link_is_str(self.doc, i, side) else ("links", i, side, "node")
                if ep.node not in self.declared:
                    self.err(path, f"unknown node '{ep.node}'", did_you_mean(ep.node, self.declared, "nodes"))
                    ok = False
                elif ep.node not in self.nodes:
                    ok = False        # the node itself is broken; reported there
                ends[side] = ep
            if not ok:
                out.append(None)
                continue
            na, nb = self.nodes[ends["a"].node], self.nodes[ends["b"].node]
            if na.name == nb.name:
                self.err(("links", i), f"link connects '{na.name}' to itself", "a link joins two different nodes")
                out.append(None)
                continue
            if na.kind == "lan" and nb.kind == "lan":
                self.err(("links", i), f"link joins two lans ('{na.name}' and '{nb.name}')",
                         "merge them into one lan, or put a router between them")
                out.append(None)
                continue
            lan = na if na.kind == "lan" else nb if nb.kind == "lan" else None
            if lan is not None:
                other = nb if lan is na else na
                key = (lan.name, other.name)
                if key in lan_members:
                    self.err(("links", i), f"'{other.name}' is already linked to lan '{lan.name}' by links[{lan_members[key]}]",
                             "a node joins a lan once; remove the duplicate link")
                    out.append(None)
                    continue
                lan_members[key] = i
                for side in ("a", "b"):
                    if self.nodes[ends[side].node].kind == "lan" and ends[side].ip is not None:
                        self.err(("links", i, side, "ip"), f"a lan has no address of its own",
                                 "put the address on the other end of the link")
                        ok = False
                if link.subnet is not None or link.pool is not None:
                    field = "subnet" if link.subnet is not None else "pool"
                    self.err(("links", i, field), f"a link to lan '{lan.name}' takes the lan's subnet",
                             f"set 'subnet' or 'pool' on the lan node '{lan.name}' instead")
                    ok = False
            impair, issues = parse_link_impair(self._raw_impair(i, link), ("links", i, "impair"))
            for path, msg, hint in issues:
                self.err(path, msg, hint)
            out.append({"a": ends["a"], "b": ends["b"], "lan": lan.name if lan else None,
                        "subnet_text": link.subnet, "pool": link.pool, "cost": link.cost,
                        "impair": impair} if ok and not issues else None)
        for name, node in self.nodes.items():
            if node.kind == "lan" and not any(l and l["lan"] == name for l in out) and \
                    not any(l is None for l in out):
                self.err(("nodes", name), f"lan '{name}' has no links", "link at least one node to it, or remove it")
        return out

    def _raw_impair(self, i: int, link: schema.Link):
        """The link's impair as written (units and all), for messages in the file's words."""
        try:
            return self.doc.data["links"][i]["impair"]
        except (KeyError, IndexError, TypeError):
            return link.impair.model_dump(exclude_none=True) if link.impair is not None else None

    def _subnets(self) -> dict[str, Subnet]:
        """One Subnet per lan and per point-to-point link, keyed 'lan:NAME' / 'link:I'."""
        wanted: list[tuple[str, tuple, str | None, str | None]] = []   # key, path, text, pool
        for name, spec in self.t.nodes.items():
            if isinstance(spec, schema.LanNode) and name in self.nodes:
                if spec.subnet is not None and spec.pool is not None:
                    self.err(("nodes", name, "pool"), "give either 'subnet' or 'pool', not both", None)
                    continue
                field = "subnet" if spec.subnet is not None else "pool"
                wanted.append((f"lan:{name}", ("nodes", name, field), spec.subnet, spec.pool))
        for i, l in enumerate(self.links):
            if l is not None and l["lan"] is None:
                if l["subnet_text"] is not None and l["pool"] is not None:
                    self.err(("links", i, "pool"), "give either 'subnet' or 'pool', not both", None)
                    self.links[i] = None
                    continue
                field = "subnet" if l["subnet_text"] is not None else "pool"
                wanted.append((f"link:{i}", ("links", i, field), l["subnet_text"], l["pool"]))
        result: dict[str, Subnet] = {}
        explicit: list[tuple[IPv4Network, tuple, str]] = []
        for key, path, text, _pool in wanted:
            if text is None:
                continue
            net, msg, hint = parse_prefix(text)
            if msg:
                self.err(path, msg, hint)
                continue
            if not in_allowed_range(net):
                self.err(path, f"{net} is not a {ALLOWED_TEXT} range",
                         "labs must not use real public addresses; take a documentation range for public hosts")
                continue
            if net.prefixlen > 30 and key.startswith("lan:"):
                self.err(path, f"{net} is too small for a lan", "a lan needs at least a /30")
                continue
            if net.prefixlen > 31:
                self.err(path, f"{net} has no room for two addresses", "use a /30 or /31 for a point-to-point link")
                continue
            clash = next((e for e in explicit if e[0].overlaps(net)), None)
            if clash:
                self.err(path, f"{net} overlaps {clash[0]} of {_place(clash[1])}",
                         "every lan and point-to-point link needs its own subnet")
                continue
            explicit.append((net, path, key))
            result[key] = Subnet(net, key[4:] if key.startswith("lan:") else None)
        alloc = PoolAllocator([e[0] for e in explicit])
        for key, path, text, pool in wanted:
            if text is not None:
                continue
            pool_name = pool or ("lan" if key.startswith("lan:") else "p2p")
            if pool_name not in self.pools:
                if pool_name in self.t.pools:
                    continue   # the pool itself is broken; reported there
                self.err(path, f"unknown pool '{pool_name}'", did_you_mean(pool_name, self.pools, "pools"))
                continue
            prefix, size = self.pools[pool_name]
            net = alloc.allocate(prefix, size)
            if net is None:
                self.err(path, f"pool '{pool_name}' ({prefix}) has no free /{size} left",
                         "make the pool larger or its subnets smaller")
                continue
            result[key] = Subnet(net, key[4:] if key.startswith("lan:") else None)
        for i, l in enumerate(self.links):
            if l is None:
                continue
            key = f"lan:{l['lan']}" if l["lan"] else f"link:{i}"
            s = result.get(key)
            l["subnet"] = s.network if s else None
            if s:
                s.links.append(i)
        return result

    def _addresses(self, subnets: dict[str, Subnet]) -> None:
        taken: dict[IPv4Network, dict[IPv4Address, tuple]] = {s.network: {} for s in subnets.values()}
        pending: list[tuple[int, str, Node]] = []       # (link, side, node) still needing an address
        for i, l in enumerate(self.links):
            if l is None or l["subnet"] is None:
                continue
            net = l["subnet"]
            for side in ("a", "b"):
                ep = l[side]
                node = self.nodes[ep.node]
                if node.kind == "lan":
                    continue
                path = ("links", i, side, "ip")
                if ep.ip is None:
                    pending.append((i, side, node))
                    continue
                ip, msg, hint = parse_address(ep.ip, net)
                if msg:
                    self.err(path, msg, hint)
                    l[side + "_ip"] = None
                    continue
                if ip in taken[net]:
                    self.err(path, f"duplicate address {ip}: {_place(taken[net][ip])} has it already",
                             "each interface needs its own address")
                    l[side + "_ip"] = None
                    continue
                taken[net][ip] = path
                l[side + "_ip"] = ip
        # routers first, so that a LAN's gateway gets the lowest address
        pending.sort(key=lambda p: (not p[2].forwards, p[0], p[1]))
        # a full subnet is one problem, however many nodes (a group's members) did not fit
        overflow: dict[IPv4Network, tuple[tuple, str, list[str]]] = {}
        for i, side, node in pending:
            l = self.links[i]
            net = l["subnet"]
            got = allocate_hosts(net, set(taken[net]), 1)
            if not got:
                s = next(s for s in subnets.values() if s.network == net)
                where = ("nodes", s.lan) if s.lan else ("links", i)
                overflow.setdefault(net, (where, node.name, []))[2].append(node.name)
                l[side + "_ip"] = None
                continue
            taken[net][got[0]] = ("links", i, side)
            l[side + "_ip"] = got[0]
        for net, (where, first, names) in overflow.items():
            more = f" and {len(names) - 1} more" if len(names) > 1 else ""
            self.err(where, f"subnet {net} is full ({host_count(net)} addresses) when placing '{first}'{more}",
                     "use a larger prefix" + (f" ({host_count(net) + len(names)} addresses are needed)" if more else ""))

    def _ifnames(self) -> None:
        """Interface names: the file's, else eth0, eth1 ... on hosts and routers, and the
        peer's name on a lan's bridge ports (readable in 'bridge link')."""
        used: dict[str, dict[str, tuple]] = {n: {} for n in self.nodes}
        for i, l in enumerate(self.links):
            if l is None:
                continue
            for side in ("a", "b"):
                ep = l[side]
                if ep.ifname is None:
                    continue
                path = ("links", i, side, "ifname")
                if len(ep.ifname) > MAX_NAME:
                    self.err(path, f"interface name '{ep.ifname}' is too long ({len(ep.ifname)} characters, at most {MAX_NAME})",
                             "Linux limits interface names to 15 characters")
                    continue
                if not IFNAME_RE.match(ep.ifname) or ep.ifname in RESERVED_NAMES or ep.ifname == ep.node:
                    self.err(path, f"'{ep.ifname}' cannot be an interface name",
                             "use letters, digits, '-', '_' and '.'; not 'lo' nor the node's own name")
                    continue
                if ep.ifname in used[ep.node]:
                    self.err(path, f"node '{ep.node}' already has an interface '{ep.ifname}' ({_place(used[ep.node][ep.ifname])})",
                             "interface names must be unique on a node")
                    continue
                used[ep.node][ep.ifname] = path
        counters = {n: 0 for n in self.nodes}
        for i, l in enumerate(self.links):
            if l is None:
                continue
            for side in ("a", "b"):
                ep = l[side]
                other = l["b" if side == "a" else "a"].node
                name = ep.ifname
                if name is None:
                    if self.nodes[ep.node].kind == "lan":
                        name = other
                    else:
                        while default_ifname(counters[ep.node]) in used[ep.node]:
                            counters[ep.node] += 1
                        name = default_ifname(counters[ep.node])
                    used[ep.node][name] = ("links", i, side)
                l[side + "_ifname"] = name
        if self.problems:
            return
        for i, l in enumerate(self.links):
            if l is None or l["subnet"] is None:
                continue
            itfs = {}
            for side in ("a", "b"):
                node = self.nodes[l[side].node]
                ip = l.get(side + "_ip")
                addr = ipaddress.ip_interface(f"{ip}/{l['subnet'].prefixlen}") if ip else None
                itf = Interface(node.name, l[side + "_ifname"], l["b" if side == "a" else "a"].node, i,
                                None if node.kind == "lan" else l["subnet"], addr)
                node.interfaces.append(itf)
                itfs[side] = itf
            l["ia"], l["ib"] = itfs["a"], itfs["b"]

    def _services(self) -> None:
        placed: dict[str, list[str]] = {s: [] for s in schema.SERVICES}
        has_agents = False
        # taken before the loop: each unlinked host is a problem of its own, not a consequence
        # of the one reported before it
        links_complete = self.complete
        for name, node in self.nodes.items():
            if node.kind != "host":
                continue
            if node.role == "agent":
                has_agents = True
                if node.services:
                    self.err(("nodes", name, "services"), "services run on server hosts, not on agent workstations",
                             "move the services to a host with 'role: server' in the cloud")
            for s in node.services:
                placed[s].append(name)
            if not node.interfaces and links_complete:
                self.err(("nodes", name), f"host '{name}' has no links", "link it to a lan or a router")
        if has_agents:
            for s, where in placed.items():
                if not where:
                    self.err(("nodes",), f"missing service '{s}': agents need it but no host runs it",
                             f"add 'services: [{s}]' to a server host in the cloud region")

    def _policies(self) -> None:
        """Firewall and nat nodes: inside/outside, sets, rules, user rulesets (firewall.py)."""
        neighbours: dict[str, set[str]] = {}
        for l in self.links:
            if l is not None:
                neighbours.setdefault(l["a"].node, set()).add(l["b"].node)
                neighbours.setdefault(l["b"].node, set()).add(l["a"].node)
        PolicyResolver(self.err, self.doc.file, self.nodes, self.t.nodes, neighbours).run()

    def _service_options(self) -> None:
        """Meaning of the services section (its structure is schema.Services)."""
        turn = self.t.services.turn
        if turn.min_port > turn.max_port:
            self.err(("services", "turn", "min_port"), f"relay port range {turn.min_port}-{turn.max_port} is empty",
                     "min_port must not exceed max_port")
        for key in ("allowed_peers", "denied_peers"):
            for i, p in enumerate(getattr(turn, key)):
                try:
                    ipaddress.ip_network(p, strict=False)
                except ValueError:
                    self.err(("services", "turn", key, i), f"'{p}' is not an address or prefix", "write e.g. 10.0.0.0/8")
        if turn.faults:
            try:
                check_faults(turn.faults)
            except (ValueError, TypeError) as exc:
                self.err(("services", "turn", "faults"), str(exc), "see docs/turn.md, 'Faults'")
        if turn.backend == "coturn" and turn.users and turn.secret:
            # coturn 4.6 skips user= lines under use-auth-secret (docs/turn.md)
            self.err(("services", "turn", "users"), "coturn takes static users or a REST secret, not both",
                     "set 'secret: null' to use the static users with coturn, or 'backend: embedded' (takes both)")
        if turn.backend == "coturn" and turn.faults:
            self.err(("services", "turn", "faults"), "fault injection needs the embedded backend",
                     "remove 'faults' or set 'backend: embedded'")

    def _static_routes(self) -> None:
        for name, spec in self.t.nodes.items():
            routes = getattr(spec, "routes", None)
            node = self.nodes.get(name)
            if routes is None or node is None:
                continue
            node.static_routes = True
            for j, r in enumerate(routes):
                path = ("nodes", name, "routes", j)
                if r.to == "default":
                    dest = DEFAULT_ROUTE
                else:
                    dest, msg, hint = parse_prefix(r.to)
                    if msg:
                        self.err(path + ("to",), msg, hint or "or write 'default'")
                        continue
                via, msg, hint = parse_address(r.via, None)
                if msg:
                    self.err(path + ("via",), msg, hint)
                    continue
                itf = next((i for i in node.interfaces if i.subnet and via in i.subnet), None)
                if itf is None:
                    nets = ", ".join(str(i.subnet) for i in node.interfaces if i.subnet) or "none"
                    self.err(path + ("via",), f"next hop {via} is not on any subnet of '{name}'",
                             f"its subnets are: {nets}")
                    continue
                if via == itf.address.ip:
                    self.err(path + ("via",), f"next hop {via} is '{name}' itself", "name the neighbouring router's address")
                    continue
                node.routes.append(Route(dest, via, itf.name, computed=False))


def link_is_str(doc: Located, i: int, side: str) -> bool:
    try:
        return isinstance(doc.data["links"][i][side], str)
    except (KeyError, IndexError, TypeError):
        return True


def subnets_by_net(subnets: list[Subnet]) -> dict[IPv4Network, Subnet]:
    return {s.network: s for s in subnets}


def _place(path: tuple) -> str:
    return format_path(path)
