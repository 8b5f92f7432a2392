"""The resolved topology: what the validator hands to the network builder and to pictures.

Everything here is decided: every interface has a name and (unless it is a LAN port) an
address, every node its routes. Builders and reports never compute addresses or routes.
"""

from __future__ import annotations

import copy
import ipaddress
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from typing import Any

from .impairment import LinkImpairment

FORWARDING_KINDS = {"router", "firewall", "nat", "vpn"}


@dataclass
class Interface:
    node: str
    name: str
    peer: str                       # the node at the other end of the link
    link: int                       # index into Topology.links
    subnet: IPv4Network | None      # None only for ports of a lan (the bridge's side)
    address: IPv4Interface | None   # None for lan ports

    def to_dict(self) -> dict:
        return {"name": self.name, "peer": self.peer, "link": self.link,
                "subnet": str(self.subnet) if self.subnet else None,
                "address": str(self.address) if self.address else None}


@dataclass
class Route:
    dest: IPv4Network               # 0.0.0.0/0 for the default route
    via: IPv4Address
    dev: str
    computed: bool = True

    @property
    def is_default(self) -> bool:
        return self.dest.prefixlen == 0

    def __str__(self) -> str:
        dest = "default" if self.is_default else str(self.dest)
        return f"{dest} via {self.via} dev {self.dev}"

    def to_dict(self) -> dict:
        return {"to": "default" if self.is_default else str(self.dest), "via": str(self.via),
                "dev": self.dev, "computed": self.computed}


@dataclass
class Node:
    name: str
    kind: str                       # host, lan, router
    role: str | None = None         # hosts: agent or server
    services: list[str] = field(default_factory=list)
    label: str | None = None
    zone: str | None = None
    interfaces: list[Interface] = field(default_factory=list)
    routes: list[Route] = field(default_factory=list)
    static_routes: bool = False     # routes given in the file rather than computed
    vpn: Any = None                 # hosts: a lab.model.vpn.VpnClient
    tunnels: list = field(default_factory=list)   # vpn nodes: lab.model.vpn.Tunnel instances
    vdi: Any = None                 # hosts: a lab.model.vdi.VdiClient (thin client)
    policy: object | None = None    # firewall / nat: lab.model.firewall.FirewallPolicy or NatPolicy
    ephemeral_ports: tuple[int, int] | None = None   # hosts: net.ipv4.ip_local_port_range

    @property
    def forwards(self) -> bool:
        return self.kind in FORWARDING_KINDS

    @property
    def addresses(self) -> list[IPv4Interface]:
        return [i.address for i in self.interfaces if i.address is not None]

    def interface_on(self, subnet: IPv4Network) -> Interface | None:
        return next((i for i in self.interfaces if i.subnet == subnet and i.address), None)

    def to_dict(self) -> dict:
        d = {"name": self.name, "kind": self.kind, "interfaces": [i.to_dict() for i in self.interfaces]}
        if self.kind == "host":
            d["role"] = self.role
            d["services"] = list(self.services)
        if self.kind != "lan":
            d["routes"] = [r.to_dict() for r in self.routes]
        if self.vpn is not None:
            d["vpn"] = self.vpn.to_dict()
        if self.tunnels:
            d["tunnels"] = [t.to_dict() for t in self.tunnels]
        if self.vdi is not None:
            d["vdi"] = self.vdi.to_dict()
        if self.policy is not None:
            d[self.policy.kind] = self.policy.to_dict()
        if self.ephemeral_ports:
            d["ephemeral_ports"] = list(self.ephemeral_ports)
        for k in ("label", "zone"):
            if getattr(self, k):
                d[k] = getattr(self, k)
        return d


@dataclass
class Link:
    index: int
    a: Interface
    b: Interface
    subnet: IPv4Network
    cost: int = 1
    impair: LinkImpairment | None = None    # None: not shaped (unless changed at run time)

    def to_dict(self) -> dict:
        d = {"index": self.index, "a": {"node": self.a.node, "ifname": self.a.name},
             "b": {"node": self.b.node, "ifname": self.b.name},
             "subnet": str(self.subnet), "cost": self.cost}
        if self.impair is not None:
            d["impair"] = self.impair.to_dict()
        return d


@dataclass
class Subnet:
    network: IPv4Network
    lan: str | None                 # the lan node, or None for a point-to-point link
    links: list[int] = field(default_factory=list)

    @property
    def label(self) -> str:
        return f"lan '{self.lan}'" if self.lan else f"links[{self.links[0]}]"


@dataclass
class Topology:
    name: str
    file: str
    description: str | None
    internet: str | None
    nodes: dict[str, Node]
    links: list[Link]
    subnets: list[Subnet]
    services: dict = field(default_factory=dict)    # service -> its options (schema.Services)
    groups: dict[str, list[str]] = field(default_factory=dict)    # group -> its members (topology 'groups:')

    def renamed(self, name: str) -> "Topology":
        """The same lab under another name (to run a second copy side by side)."""
        t = copy.deepcopy(self)
        t.name = name
        return t

    def hosts(self) -> list[Node]:
        return [n for n in self.nodes.values() if n.kind == "host"]

    def address_of(self, node: str) -> IPv4Address | None:
        """A node's first address (what people mean by 'the address of turn')."""
        addrs = self.nodes[node].addresses
        return addrs[0].ip if addrs else None

    def subnet_of(self, network: IPv4Network) -> Subnet | None:
        return next((s for s in self.subnets if s.network == network), None)

    def to_dict(self) -> dict:
        return {"name": self.name, "file": self.file, "description": self.description,
                "internet": self.internet,
                "nodes": {n: node.to_dict() for n, node in self.nodes.items()},
                "links": [l.to_dict() for l in self.links],
                "subnets": [{"prefix": str(s.network), "lan": s.lan, "links": s.links} for s in self.subnets]}


DEFAULT_ROUTE = ipaddress.ip_network("0.0.0.0/0")
