"""The deployment a policy is judged in, and the lab generated for it (no kernel here).

The lab: one agent per operating system in the agents' subnet, the firewall node between
the agents and an ISP router (its interfaces named as the rules name them), a cloud region
router, ``turn`` and ``signalling`` (with the media edge) at addresses inside the region's
largest Connect range and ``edge``, which answers the probes at the addresses spanning the ranges
(first and last usable address and one in the middle of each prefix; they are /32s on its
loopback, routed by the ISP and the region). The topology goes through the normal model (validation),
so a deployment the lab cannot build is refused before anything is built.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from lab.core.errors import InputError, Problem, UsageError
from lab.core.ports import EPHEMERAL

from ..firewall import load_ip_ranges
from ..validate import load_topology
from .base import addresses_in

CALL_PORTS = 64     # the softphone's call binds among the lowest ports of its OS's range ...
CALL_PORTS_FROM = 16  # ... above the probes' own (the lowest port and the next few, one per re-run)
SIGNALLING_PORT, TURN_PORT = 443, 3478
SERVICE = "AMAZON_CONNECT"
EDGE_LINK = "100.64.0.0/30"             # region <-> edge: shared address space, never a Connect range
UPLINKS = ("198.51.100.0/30", "198.51.100.4/30")
# --through and --vdi: the agents (or thin clients) at home behind their ISP uplink, and the
# VPN concentrator's public side, beside the policy's firewall: the tunnel itself is not
# judged, only the softphone's own traffic
HOME_LAN, HOME_UPLINK, SIDE_UPLINK = "192.168.1.0/24", "198.51.100.8/30", "198.51.100.12/30"
TUNNELS = ("10.200.0.0/24", "172.31.200.0/24", "192.168.200.0/24")
THROUGH = ("vpn-full", "vpn-split")


@dataclass
class Deployment:
    agents: ipaddress.IPv4Network
    oses: list[str]
    prefixes: list[str]                       # the region's Connect ranges
    inside: str = "inside"
    outside: str = "outside"
    nat: bool = False
    region: str = ""
    ip_ranges: str = ""
    connect_address: str = ""                 # TURN (set by topology())
    signalling_address: str = ""              # signalling and media edge
    targets: list[str] = field(default_factory=list)    # probe addresses on edge
    turn_tcp: bool = False                    # the media info offers TURN over TCP (or TLS) 443
    turn_hosts: list[str] = field(default_factory=list)  # the media info's TURN addresses (IP literals)
    turn_tcp_targets: list[str] = field(default_factory=list)   # where turn-tcp-443 is probed (set by topology())
    through: str | None = None                # vpn-full, vpn-split: the agents at home in a VPN to the data centre
    bypass: list[str] = field(default_factory=list)      # vpn-split: what goes through the home ISP instead
    vdi: bool = False                         # the softphone runs in a virtual desktop on the agents' subnet

    @property
    def served(self) -> list[str]:
        """Every address the edge host answers at."""
        return list(dict.fromkeys(self.targets + self.turn_tcp_targets))

    @property
    def interfaces(self) -> tuple[str, str]:
        return self.inside, self.outside

    def ports(self, os_name: str) -> list[int]:
        """Source ports spanning an OS's ephemeral range: lowest, middle, highest."""
        lo, hi = EPHEMERAL[os_name]
        return [lo, (lo + hi) // 2, hi]

    def return_range(self) -> tuple[int, int]:
        """Every OS's ephemeral ports in one range (nft refuses overlapping ones)."""
        return min(EPHEMERAL[o][0] for o in self.oses), max(EPHEMERAL[o][1] for o in self.oses)

    def agent(self, os_name: str) -> str:
        """The node the softphone of an OS runs on (and the probes leave from)."""
        return f"desktop-{os_name}" if self.vdi else f"agent-{os_name}"

    def caller(self, os_name: str) -> str:
        """The node a call is placed from (a thin client under VDI)."""
        return f"thin-{os_name}" if self.vdi else self.agent(os_name)

    @property
    def mode(self) -> str:
        return "vdi" if self.vdi else (self.through or "direct")


def deployment(agents: str, oses: list[str], ip_ranges: str, region: str, interfaces: str | None,
               nat: bool = False, through: str | None = None, vdi: bool = False,
               bypass: str | None = None) -> Deployment:
    """The deployment from the command's arguments; UsageError or InputError when wrong."""
    try:
        net = ipaddress.IPv4Network(agents, strict=False)
    except ValueError:
        raise UsageError(f"--agents {agents!r} is not an IPv4 prefix: write it as the rules name it, e.g. 10.20.0.0/23")
    if net.prefixlen > 29:
        raise UsageError(f"--agents {agents}: the lab needs room for the firewall and {len(oses)} agents "
                         f"(a /29 or larger)")
    oses = list(dict.fromkeys(oses or ["windows"]))
    for o in oses:
        if o not in EPHEMERAL:
            raise UsageError(f"--os {o!r}: one of {', '.join(EPHEMERAL)}")
    inside, outside = "inside", "outside"
    if interfaces:
        parts = dict(p.split("=", 1) for p in interfaces.split(",") if "=" in p)
        if set(parts) != {"inside", "outside"} or any(not v or len(v) > 15 or "/" in v for v in parts.values()):
            raise UsageError(f"--interfaces {interfaces!r}: write inside=IF,outside=IF with the interface names "
                             f"the rules use (at most 15 characters each), e.g. inside=ens192,outside=ens160")
        inside, outside = parts["inside"], parts["outside"]
    prefixes, msg, hint = load_ip_ranges(Path(ip_ranges), SERVICE, region, ip_ranges)
    if prefixes is None:
        raise InputError([Problem(ip_ranges, "", msg, hint)])
    big = min(prefixes, key=lambda p: ipaddress.ip_network(p).prefixlen)
    if ipaddress.ip_network(big).prefixlen > 27:
        raise InputError([Problem(ip_ranges, "", f"the region's largest Connect range {big} is smaller than a /27",
                                  "the lab places TURN inside it, apart from the probed addresses")])
    taken = [ipaddress.ip_network(x) for x in (EDGE_LINK, *UPLINKS)]
    for p in prefixes + [str(net)]:
        if any(ipaddress.ip_network(p).overlaps(t) for t in taken):
            raise InputError([Problem(ip_ranges, "", f"{p} overlaps the lab's own links ({', '.join(map(str, taken))})",
                                      "this lab cannot judge a range it uses itself")])
    if through is not None and through not in THROUGH:
        raise UsageError(f"--through {through!r}: one of {', '.join(THROUGH)}")
    if through and vdi:
        raise UsageError("--through and --vdi together: under VDI the softphone runs in the data centre, so no VPN "
                         "is on its path; give one of them")
    if bypass and through != "vpn-split":
        raise UsageError("--bypass is the split tunnel's list: give it with --through vpn-split")
    split: list[str] = []
    if through == "vpn-split":
        for w in (bypass.split(",") if bypass else prefixes):
            try:
                split.append(str(ipaddress.IPv4Network(w.strip(), strict=False)))
            except ValueError:
                raise UsageError(f"--bypass {w.strip()!r} is not an IPv4 prefix: list the split tunnel's "
                                 f"destinations, e.g. {','.join(prefixes[:2])}")
    if through or vdi:
        for p in prefixes + [str(net)]:
            for t in (HOME_LAN, HOME_UPLINK, SIDE_UPLINK):
                if ipaddress.ip_network(p).overlaps(ipaddress.ip_network(t)):
                    raise InputError([Problem(ip_ranges if p != str(net) else "--agents", "",
                                              f"{p} overlaps the lab's home network or uplinks ({t})",
                                              "this lab cannot judge a range it uses itself")])
    return Deployment(net, oses, prefixes, inside, outside, nat, region, ip_ranges, through=through, bypass=split,
                      vdi=vdi)


def _connect_link(prefix: str) -> ipaddress.IPv4Network:
    """A /29 a quarter into the largest range: apart from its first, middle and last address."""
    net = ipaddress.ip_network(prefix)
    return ipaddress.ip_network(f"{net.network_address + net.num_addresses // 4}/29")


def topology(d: Deployment, name: str = "policy"):
    """The lab as a validated ``Topology`` (lab.model)."""
    big = min(d.prefixes, key=lambda p: ipaddress.ip_network(p).prefixlen)
    link = _connect_link(big)
    d.connect_address = str(link.network_address + 2)
    d.signalling_address = str(link.network_address + 3)
    d.targets = [a for a in addresses_in(d.prefixes) if ipaddress.ip_address(a) not in link]
    # TURN over TCP is probed at the media info's TURN addresses where it names them inside the
    # region's ranges, else (host names, unknown here) at the addresses spanning the ranges
    named = [h for h in d.turn_hosts if any(ipaddress.ip_address(h) in ipaddress.ip_network(p) for p in d.prefixes)
             and ipaddress.ip_address(h) not in link]
    d.turn_tcp_targets = (named or list(d.targets)) if d.turn_tcp else []
    edge_ip = str(ipaddress.ip_network(EDGE_LINK).network_address + 2)
    region_ip = str(ipaddress.ip_network(UPLINKS[1]).network_address + 2)
    isp_ip = str(ipaddress.ip_network(UPLINKS[1]).network_address + 1)
    fw_ip = str(ipaddress.ip_network(UPLINKS[0]).network_address + 1)
    def agent_node(o: str) -> dict:
        # The softphone's call binds from the bottom of its OS's range: a real one picks any port
        # of it, so a rule that covers part of the range (Windows ports for Linux agents) fails
        # some calls and not others, and a call from a random port would give a random verdict.
        # The probes span the whole range (lowest, middle, highest); the call is the end-to-end
        # proof from the ports partial rules miss first (docs/policy.md, "The call").
        lo = EPHEMERAL[o][0] + CALL_PORTS_FROM
        node = {"kind": "host", "role": "agent", "ephemeral_ports": f"{lo}-{lo + CALL_PORTS - 1}"}
        return node if o == "macos" else dict(node, os=o)

    zone = "datacentre" if d.through or d.vdi else "office"
    nodes: dict = {}
    isp_routes = [{"to": f"{t}/32", "via": region_ip} for t in d.served] + \
        [{"to": str(link), "via": region_ip}, {"to": str(d.agents), "via": fw_ip}]
    links: list = []
    if d.vdi:
        # the softphone in each OS's virtual desktop on the agents' subnet; the thin clients at
        # home reach their desktops through a VPN to the data centre, not through your firewall
        for o in d.oses:
            nodes[d.agent(o)] = {"kind": "vdi", "zone": zone, "label": f"{o} virtual desktop (softphone inside)"}
            nodes[d.caller(o)] = {"kind": "host", "role": "agent", "zone": "home", "label": f"{o} agent's thin client",
                                  "vdi": {"desktop": d.agent(o)},
                                  "vpn": {"concentrator": "vpn-gw", "transport": "udp", "mode": "full"}}
    else:
        for o in d.oses:
            nodes[d.agent(o)] = dict(agent_node(o), zone="home" if d.through else "office", label=f"{o} agent")
            if d.through:
                mode = d.through.split("-")[1]
                nodes[d.agent(o)]["vpn"] = {"concentrator": "vpn-gw", "transport": "udp", "mode": mode,
                                            **({"bypass": list(d.bypass)} if mode == "split" else {})}
    if d.through or d.vdi:
        side = "vpn-gw"
        gw_in = str(d.agents.network_address + 2)
        fw_in = str(d.agents.network_address + 1)
        side_isp = str(ipaddress.ip_network(SIDE_UPLINK).network_address + 1)
        side_pub = str(ipaddress.ip_network(SIDE_UPLINK).network_address + 2)
        home_isp = str(ipaddress.ip_network(HOME_UPLINK).network_address + 1)
        home_gw = str(ipaddress.ip_network(HOME_UPLINK).network_address + 2)
        nodes.update({
            "home-lan": {"kind": "lan", "subnet": HOME_LAN, "zone": "home"},
            "home-router": {"kind": "router", "zone": "home", "label": "home router"},
        })
        # out to the internet through your firewall; back home through the ISP
        side_routes = [{"to": "default", "via": fw_in}, {"to": HOME_LAN, "via": side_isp},
                       {"to": HOME_UPLINK, "via": side_isp}]
        used = [ipaddress.ip_network(x) for x in d.prefixes + [str(d.agents), HOME_LAN]]
        tunnel = next(t for t in TUNNELS if not any(ipaddress.ip_network(t).overlaps(u) for u in used))
        nodes["vpn-gw"] = {"kind": "vpn", "zone": zone, "label": "VPN concentrator", "tunnel": tunnel,
                           "routes": side_routes}
        for o in d.oses if d.vdi else []:
            # two routers on the subnet, both one hop from the ISP: the desktops' way out is
            # your firewall (the concentrator's masqueraded traffic is on their own subnet)
            nodes[d.agent(o)]["routes"] = [{"to": "default", "via": fw_in}]
        isp_routes += [{"to": HOME_LAN, "via": home_gw}]
        links += [{"a": d.caller(o), "b": "home-lan"} for o in d.oses]
        links += [{"a": "home-router", "b": "home-lan"},
                  {"a": {"node": "home-router", "ip": home_gw}, "b": {"node": "isp", "ip": home_isp},
                   "subnet": HOME_UPLINK},
                  {"a": {"node": side, "ip": side_pub}, "b": {"node": "isp", "ip": side_isp}, "subnet": SIDE_UPLINK},
                  {"a": {"node": side, "ip": gw_in}, "b": "agents"}]
        if d.vdi:
            links += [{"a": d.agent(o), "b": "agents"} for o in d.oses]
        fw_inside = {"node": "fw", "ifname": d.inside, "ip": fw_in}
    else:
        links += [{"a": d.agent(o), "b": "agents"} for o in d.oses]
        fw_inside = {"node": "fw", "ifname": d.inside}
    nodes.update({
        "agents": {"kind": "lan", "subnet": str(d.agents), "zone": zone},
        "fw": {"kind": "router", "zone": zone, "label": "your firewall" + (" (data-centre edge)" if zone != "office"
                                                                             else "")},
        # a node's own routes replace the computed ones: all of them
        "isp": {"kind": "router", "zone": "internet", "label": "ISP", "routes": isp_routes},
        "region": {"kind": "router", "zone": "cloud", "label": f"{d.region or 'region'} edge",
                   "routes": [{"to": f"{t}/32", "via": edge_ip} for t in d.served]
                   + [{"to": "default", "via": isp_ip}]},
        "cloud": {"kind": "lan", "subnet": str(link), "zone": "cloud"},
        "turn": {"kind": "host", "services": ["turn"], "zone": "cloud", "label": "Connect TURN"},
        "signalling": {"kind": "host", "services": ["signalling", "media"], "zone": "cloud",
                       "label": "Connect signalling and media edge"},
        "edge": {"kind": "host", "zone": "cloud", "label": "probe targets in the Connect ranges"},
    })
    links += [
        {"a": fw_inside, "b": "agents"},
        {"a": {"node": "fw", "ifname": d.outside, "ip": fw_ip}, "b": "isp", "subnet": UPLINKS[0]},
        {"a": {"node": "isp", "ip": isp_ip}, "b": {"node": "region", "ip": region_ip}, "subnet": UPLINKS[1]},
        {"a": {"node": "region", "ip": str(link.network_address + 1)}, "b": "cloud"},
        {"a": {"node": "turn", "ip": d.connect_address}, "b": "cloud"},
        {"a": {"node": "signalling", "ip": d.signalling_address}, "b": "cloud"},
        {"a": "region", "b": {"node": "edge", "ip": edge_ip}, "subnet": EDGE_LINK},
    ]
    doc = {"name": name, "description": "icelab policy: the engineer's rules on the firewall node",
           "internet": "isp", "nodes": nodes, "links": links}
    text = yaml.safe_dump(doc, sort_keys=False)
    return load_topology(f"<policy lab {name}>", name, text=text), text
