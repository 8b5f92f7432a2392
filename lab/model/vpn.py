"""VPN tunnels in the model: what a host's ``vpn:`` field says, checked and resolved.

A ``vpn`` node is a concentrator: a router in the data centre that terminates OpenVPN
tunnels (TLS mode, tun devices) and forwards, masqueraded, what arrives through them. A
host joins it with::

    vpn: {concentrator: vpn-gw, transport: udp, mode: split, bypass: [turn, 203.0.113.0/26]}

``full`` sends everything through the tunnel (``redirect-gateway def1``: 0.0.0.0/1 and
128.0.0.0/1 through the tunnel, a host route to the concentrator through the underlay);
``split`` does the same but sends the ``bypass`` destinations (prefixes, or node names:
their addresses, or a lan's subnet) through the home network (``net_gateway``). This is
the "exclude" form of split tunnelling, the one the field guide recommends for the
softphone's destinations. Everything here is decided before the kernel is touched; the
realisation is ``lab/net/vpn.py``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network, ip_network
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from .addressing import ALLOWED_TEXT, PoolAllocator, in_allowed_range, parse_prefix
from lab.core.errors import did_you_mean
from lab.core.names import tun_device

DEFAULT_PORTS = {"udp": 1194, "tcp": 443}
#: concentrators without a ``tunnel:`` prefix get a /24 from here
TUNNEL_POOL = (ip_network("10.200.0.0/16"), 24)
MIN_TUNNEL_PREFIXLEN = 29   # room for the server and a few clients


class VpnSpec(BaseModel):
    """A host's VPN client: which concentrator, over what, and which traffic."""

    model_config = ConfigDict(extra="forbid", defer_build=True)   # built on first use (start-up, #12)
    concentrator: str = Field(description="the vpn node that terminates this host's tunnel")
    transport: Literal["udp", "tcp"] = Field("udp", description="OpenVPN over udp (default port 1194) or tcp (443)")
    port: int | None = Field(None, ge=1, le=65535, description="the concentrator's port (default: 1194 udp, 443 tcp)")
    mode: Literal["full", "split"] = Field("full", description="full: everything through the tunnel; "
                                           "split: everything but 'bypass'")
    bypass: list[str] = Field(default_factory=list, description="split only: destinations that go through the "
                              "home network instead: prefixes (203.0.113.0/26), addresses or node names")


@dataclass
class Tunnel:
    """One OpenVPN server instance on a concentrator (one per transport and port in use)."""

    concentrator: str
    index: int                  # the tun device is vpn<index> on the concentrator
    proto: str                  # udp | tcp
    port: int
    subnet: IPv4Network         # the tunnel's addresses; the server takes the first
    clients: list[str] = field(default_factory=list)

    @property
    def device(self) -> str:
        return tun_device(self.index)

    def to_dict(self) -> dict:
        return {"index": self.index, "device": self.device, "proto": self.proto, "port": self.port,
                "subnet": str(self.subnet), "clients": list(self.clients)}


@dataclass
class VpnClient:
    """A host's tunnel, resolved: ``remote`` is the concentrator's address it connects to."""

    concentrator: str
    proto: str
    port: int
    mode: str
    bypass: list[IPv4Network]
    tunnel: int                 # index into the concentrator's tunnels
    remote: IPv4Address | None = None
    device: str = tun_device(0)     # the client's tun device

    def to_dict(self) -> dict:
        return {"concentrator": self.concentrator, "proto": self.proto, "port": self.port,
                "mode": self.mode, "bypass": [str(b) for b in self.bypass], "tunnel": self.tunnel,
                "remote": str(self.remote) if self.remote else None, "device": self.device}


def _bypass_item(item: object, nodes: dict, declared: set[str]) -> tuple[list[IPv4Network], str | None, str | None]:
    """A bypass entry as prefixes: a prefix, an address (/32), a lan (its subnet) or a node
    (its addresses)."""
    if not isinstance(item, str):
        return [], f"{item!r} is neither a prefix nor a node name", "write a prefix (203.0.113.0/26) or a node name"
    if item in declared:
        node = nodes.get(item)
        if node is None:
            return [], None, None          # the node itself is broken; reported there
        if node.kind == "lan":
            nets = sorted({i.subnet for n in nodes.values() for i in n.interfaces
                           if i.peer == item and i.subnet is not None})
            return nets, None, None
        return [ip_network(f"{a.ip}/32") for a in node.addresses], None, None
    if item[:1].isdigit():
        text = item if "/" in item else f"{item}/32"
        net, msg, hint = parse_prefix(text)
        if msg:
            return [], msg, hint
        return [net], None, None
    return [], f"'{item}' is neither a prefix nor a node name", \
        did_you_mean(item, declared, "nodes") or "write a prefix (203.0.113.0/26) or a node name"


def resolve(resolver, subnets: list) -> None:
    """Check every ``vpn:`` field and every vpn node's ``tunnel:``; attach the resolved
    clients (``Node.vpn``) and server instances (``Node.tunnels``). Problems go to the
    resolver, at the place in the file where they are."""
    nodes = resolver.nodes
    concentrators = [n for n in nodes if nodes[n].kind == "vpn"]
    lab_nets = [s.network for s in subnets]
    instances: dict[str, dict[tuple[str, int], Tunnel]] = {c: {} for c in concentrators}
    clients: dict[str, VpnClient] = {}
    for name, spec in resolver.t.nodes.items():
        vpn = getattr(spec, "vpn", None)
        if vpn is None or name not in nodes:
            continue
        path = ("nodes", name, "vpn")
        c = vpn.concentrator
        ok = True
        if c not in resolver.declared:
            resolver.err(path + ("concentrator",), f"unknown node '{c}'",
                         did_you_mean(c, concentrators, "vpn nodes") or
                         "declare the concentrator as a node with 'kind: vpn' in the data centre")
            ok = False
        elif c in nodes and nodes[c].kind != "vpn":
            resolver.err(path + ("concentrator",), f"'{c}' is a {nodes[c].kind}, not a vpn concentrator",
                         did_you_mean(c, concentrators, "vpn nodes") if concentrators else
                         "declare the concentrator with 'kind: vpn' (a router that terminates tunnels)")
            ok = False
        elif c not in nodes:
            ok = False
        bypass: list[IPv4Network] = []
        if vpn.mode == "full" and vpn.bypass:
            resolver.err(path + ("bypass",), "a full tunnel has no bypass: everything goes through it",
                         "set 'mode: split' to send these destinations through the home network")
            ok = False
        if vpn.mode == "split" and not vpn.bypass:
            resolver.err(path + ("mode",), "a split tunnel needs 'bypass': the destinations that avoid the tunnel",
                         "add e.g. 'bypass: [turn, 203.0.113.0/26]', or set 'mode: full'")
            ok = False
        for j, item in enumerate(vpn.bypass):
            nets, msg, hint = _bypass_item(item, nodes, resolver.declared)
            if msg:
                resolver.err(path + ("bypass", j), msg, hint)
                ok = False
            bypass += [n for n in nets if n not in bypass]
        if not ok:
            continue
        port = vpn.port or DEFAULT_PORTS[vpn.transport]
        key = (vpn.transport, port)
        inst = instances[c]
        if key not in inst:
            inst[key] = Tunnel(c, len(inst), vpn.transport, port, ip_network("0.0.0.0/32"))
        inst[key].clients.append(name)
        clients[name] = VpnClient(c, vpn.transport, port, vpn.mode, bypass, inst[key].index)
    alloc = PoolAllocator(list(lab_nets))
    for c in concentrators:
        spec = resolver.t.nodes[c]
        tunnels = list(instances[c].values())
        nodes[c].tunnels = tunnels
        text = getattr(spec, "tunnel", None)
        path = ("nodes", c, "tunnel")
        if text is not None:
            net, msg, hint = parse_prefix(text)
            if msg:
                resolver.err(path, msg, hint)
                continue
            if not in_allowed_range(net):
                resolver.err(path, f"{net} is not a {ALLOWED_TEXT} range",
                             "tunnel addresses are inside addresses: take a private range")
                continue
            clash = next((n for n in alloc.used if n.overlaps(net)), None)
            if clash is not None:
                resolver.err(path, f"{net} overlaps {clash}, already used in the lab",
                             "every tunnel needs a prefix of its own")
                continue
            alloc.used.append(net)
        else:
            if not tunnels:
                continue
            net = alloc.allocate(*TUNNEL_POOL)
            if net is None:
                resolver.err(("nodes", c), f"no free /{TUNNEL_POOL[1]} left in {TUNNEL_POOL[0]} for the tunnel",
                             "give the concentrator a 'tunnel:' prefix")
                continue
        if not tunnels:
            continue
        bits = math.ceil(math.log2(len(tunnels))) if len(tunnels) > 1 else 0
        if net.prefixlen + bits > MIN_TUNNEL_PREFIXLEN:
            resolver.err(path if text is not None else ("nodes", c),
                         f"{net} is too small for {len(tunnels)} tunnel{'s' if len(tunnels) > 1 else ''} "
                         f"(each needs at least a /{MIN_TUNNEL_PREFIXLEN})",
                         "use a larger prefix, e.g. a /24")
            continue
        for t, sub in zip(tunnels, net.subnets(prefixlen_diff=bits)):
            t.subnet = sub
    for name, client in clients.items():
        nodes[name].vpn = client


def attach_remotes(nodes: dict, trace) -> list[tuple[str, str, str]]:
    """Choose, for each client, the concentrator address it reaches (the first address
    whose path ends on that very interface: the one facing the client). Returns
    (client, concentrator, reason) for clients that cannot reach it at all."""
    unreachable = []
    for name, node in nodes.items():
        client = getattr(node, "vpn", None)
        if client is None:
            continue
        conc = nodes[client.concentrator]
        best = None
        for itf in conc.interfaces:
            if itf.address is None:
                continue
            path = trace(nodes, name, itf.address.ip)
            if path is None:
                continue
            # the packet arrives on this interface if the last hop shares its subnet
            direct = len(path) < 2 or nodes[path[-2]].interface_on(itf.subnet) is not None
            rank = (not direct, len(path))
            if best is None or rank < best[0]:
                best = (rank, itf.address.ip)
        if best is None:
            unreachable.append((name, client.concentrator, "no route"))
        else:
            client.remote = best[1]
    return unreachable


def tunnelled(node, dst) -> bool:
    """Does ``node`` send traffic for address ``dst`` into its tunnel? The pushed
    0.0.0.0/1 and 128.0.0.0/1 beat the default route only: connected subnets, more
    specific routes, the concentrator's host route and the bypassed prefixes win."""
    c = getattr(node, "vpn", None)
    if c is None:
        return False
    if any(i.subnet is not None and dst in i.subnet for i in node.interfaces):
        return False
    if any(r.dest.prefixlen >= 1 and dst in r.dest for r in node.routes):
        return False
    return dst != c.remote and not any(dst in b for b in c.bypass)
