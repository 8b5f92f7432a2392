"""Where packets died: the captures along each probe's path, read with scapy.

For each probe the runner captured every interface its packets cross, in both directions
(``lab.model.routing.hops``). Requests are the probe's packets towards the destination port,
replies those coming back from it; both carry the probe's run id, so translated addresses
and ports (NAT) do not hide them. Counting them at each capture point, in path order, gives
the first point where they stop: on a link (left one node, never reached the next) or inside a
node (arrived on one interface, never left by the next: its firewall or its routing).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from lab.model.routing import hops
from lab.model.topology import Topology


@dataclass(frozen=True)
class Point:
    node: str
    interface: str
    direction: str               # "out" (leaving the node) or "in" (arriving)

    @property
    def label(self) -> str:
        return f"{self.node}:{self.interface}"


def path_points(topo: Topology, src: str, dst_address) -> list[Point] | None:
    """Capture points in the order a packet from ``src`` to ``dst_address`` meets them.
    A tunnelled packet (lab/model/vpn.py) is followed inside the tunnel: out of the client's
    tun device, into the concentrator's, and on from there (on the underlay it is only
    OpenVPN's encrypted datagrams, in which a probe cannot be recognised)."""
    from lab.model.vpn import tunnelled
    node = topo.nodes[src]
    if tunnelled(node, dst_address):
        c = node.vpn
        conc = topo.nodes[c.concentrator]
        rest = path_points(topo, c.concentrator, dst_address)
        if rest is None:
            return None
        return [Point(src, c.device, "out"), Point(conc.name, conc.tunnels[c.tunnel].device, "in"), *rest]
    route = hops(topo.nodes, src, dst_address)
    if route is None:
        return None
    points = []
    for node, arrived, leaves in route:
        if arrived:
            points.append(Point(node, arrived, "in"))
        if leaves:
            points.append(Point(node, leaves, "out"))
    return points


def count_probe_packets(pcap: Path, run_id: str, proto: str, port: int) -> tuple[int, int]:
    """(requests, replies) of one probe run in a capture file."""
    from scapy.layers.inet import IP, TCP, UDP
    from scapy.utils import PcapReader

    requests = replies = 0
    tag = run_id.encode()
    try:
        reader = PcapReader(str(pcap))
    except (OSError, EOFError):
        return 0, 0
    with reader:
        for pkt in reader:
            if IP not in pkt:
                continue
            if proto in ("udp", "stun") and UDP in pkt:
                u = pkt[UDP]
                if tag not in bytes(u.payload):
                    continue
                if u.dport == port:
                    requests += 1
                elif u.sport == port:
                    replies += 1
            elif proto == "tcp" and TCP in pkt:
                # each TCP probe is a connection: its SYN is the request, the SYN-ACK the reply
                t = pkt[TCP]
                flags = int(t.flags)
                if t.dport == port and flags & 0x12 == 0x02:
                    requests += 1
                elif t.sport == port and flags & 0x12 == 0x12:
                    replies += 1
    return requests, replies


def where(points: list[Point], counts: list[int], what: str) -> str:
    """One sentence: how far the packets got, and where they stopped."""
    if not points:
        return f"no path for the {what}"
    if counts[0] == 0:
        return f"no {what} left {points[0].node}"
    for i in range(1, len(points)):
        if counts[i] == 0:
            prev, here = points[i - 1], points[i]
            head = f"{counts[0]} {what} left {points[0].node}"
            if counts[i - 1] != counts[0]:
                head += f", {counts[i - 1]} got as far as {prev.label}"
            if prev.node == here.node:
                return f"{head}; they arrived at {here.node} ({prev.interface}) and never left it ({here.interface}): " \
                       f"dropped inside {here.node}"
            return f"{head}; they left {prev.node} ({prev.interface}) and never reached {here.node} " \
                   f"({here.interface}): lost on the link between them"
    last = points[-1]
    if counts[-1] < counts[0]:
        return f"{counts[-1]} of {counts[0]} {what} reached {last.node}: some were lost on the way"
    return f"all {counts[0]} {what} reached {last.node}"


def diagnose_probe(topo: Topology, obs: dict, run_id: str, spec, pcaps: dict[str, Path],
                   dst_address) -> dict:
    """Per-point counts and a sentence for each direction of one probe."""
    out: dict = {}
    forward = path_points(topo, spec.from_, dst_address)
    if forward is None:
        return {"requests_where": f"{spec.from_} has no route to {dst_address}", "no_route": True}
    # the replies retrace the requests' path the other way (the lab's routes are symmetric)
    backward = [Point(p.node, p.interface, "out" if p.direction == "in" else "in") for p in reversed(forward)]
    counted: dict[str, tuple[int, int]] = {}
    for p in forward:
        if p.label in pcaps and p.label not in counted:
            counted[p.label] = count_probe_packets(pcaps[p.label], run_id, spec.proto, spec.port)
    for key, points, idx, what in (("requests", forward, 0, "requests"), ("replies", backward, 1, "replies")):
        pts = [p for p in points if p.label in counted]
        counts = [counted[p.label][idx] for p in pts]
        out[key + "_path"] = [{"at": p.label, "direction": p.direction, "count": c} for p, c in zip(pts, counts)]
        if key == "replies" and counts and counts[0] == 0:
            out["replies_where"] = "no reply was sent" if obs.get("requests_received", 0) == 0 \
                else f"no reply left {pts[0].node}"
        else:
            out[key + "_where"] = where(pts, counts, what)
    return out


def blame_rules(obs: dict, observations: dict) -> None:
    """Where packets were dropped inside a firewall, name the rules that counted drops:
    "...dropped inside fw; rule 10 (default drop, inbound) dropped 5 packets from ..."."""
    for key in ("requests_where", "replies_where"):
        text = obs.get(key, "")
        if "dropped inside " not in text:
            continue
        node = text.rsplit("dropped inside ", 1)[1].split()[0]
        fw = observations.get(f"firewall:{node}", {})
        blamed = [r for r in fw.get("rules", []) if r.get("action") in ("drop", "reject") and r["packets"] > 0]
        if blamed:
            obs[key.replace("_where", "_dropped_by")] = [r["sentence"] for r in blamed]
            obs[key] = text + "; " + "; ".join(r["sentence"] for r in blamed[:2])
