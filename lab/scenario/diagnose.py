"""Where packets died: the captures along each probe's and call's path (read by pcap.py).

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

from lab.core import stun
from lab.model.routing import hops
from lab.model.topology import Topology
from lab.model.vpn import tunnelled

from .pcap import packets


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
    requests = replies = 0
    tag = run_id.encode()
    for pkt in packets(pcap):
        if proto in ("udp", "stun") and pkt.proto == 17:
            if tag not in pkt.payload:
                continue
            if pkt.dport == port:
                requests += 1
            elif pkt.sport == port:
                replies += 1
        elif proto == "tcp" and pkt.proto == 6:
            # each TCP probe is a connection: its SYN is the request, the SYN-ACK the reply
            if pkt.dport == port and pkt.flags & 0x12 == 0x02:
                requests += 1
            elif pkt.sport == port and pkt.flags & 0x12 == 0x12:
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


# -- calls: STUN/TURN transactions along the path (RFC 8489 section 5, RFC 8656) ------------

def stun_header(payload: bytes) -> tuple[str, str, bytes, int | None] | None:
    """(method, class, transaction id, error code) of a STUN message, or None for anything
    else (ChannelData, media)."""
    h = stun.peek(payload)
    if h is None:
        return None
    return stun.method_name(h.method), stun.CLASS_NAMES[h.cls], h.tid, h.code


def stun_messages(pcap: Path, port: int) -> list[tuple[str, str, bytes, int | None, str]]:
    """Every STUN message over UDP to or from ``port`` in a capture:
    (method, class, transaction id, error code, "src-ip:src-port")."""
    out = []
    for pkt in packets(pcap):
        if pkt.proto != 17 or port not in (pkt.sport, pkt.dport):
            continue
        h = stun_header(pkt.payload)
        if h is not None:
            out.append(h + (f"{pkt.src}:{pkt.sport}",))
    return out


def _count(msgs, tids: set, classes: tuple[str, ...]) -> dict[str, int]:
    by: dict[str, int] = {}
    for method, cls, tid, _code, _src in msgs:
        if tid in tids and cls in classes:
            by[method] = by.get(method, 0) + 1
    return by


def diagnose_call(topo: Topology, agent: str, turn: str, pcaps: dict[str, Path], port: int = 3478) -> dict:
    """The call's STUN/TURN transactions at each capture point between the agent and TURN:
    requests are the agent's (its transaction IDs, as it sent them, so NAT cannot hide
    them), answers the TURN server's to those. Returns the per-point counts, the clients
    TURN saw ("ip:port", after any NAT), and one sentence on how far the Allocates got."""
    forward = path_points(topo, agent, topo.address_of(turn))
    if forward is None:
        return {"where": f"{agent} has no route to {turn}"}
    backward = [Point(p.node, p.interface, "out" if p.direction == "in" else "in") for p in reversed(forward)]
    read = {p.label: stun_messages(pcaps[p.label], port) for p in forward if p.label in pcaps}
    first = forward[0]
    if first.label not in read:
        return {"where": "no capture on the agent's interface"}
    # the softphone's sockets are those that sent an Allocate: a probe's STUN Bindings from the
    # same host are not the call's
    sockets = {src for m, cls, _t, _c, src in read[first.label] if cls == "request" and m == "Allocate"}
    tids = {tid for _m, cls, tid, _c, src in read[first.label] if cls == "request" and src in sockets}
    allocs = {tid for m, cls, tid, _c, _s in read[first.label] if cls == "request" and m == "Allocate"}
    points = []
    for p in forward:
        if p.label in read:
            msgs = read[p.label]
            points.append({"at": p.label, "direction": p.direction, "requests": _count(msgs, tids, ("request",)),
                           "answers": _count(msgs, tids, ("success", "error")),
                           "transactions": len({tid for _m, cls, tid, _c, _s in msgs if tid in tids and cls == "request"})})
    last = forward[-1]
    clients = sorted({src for m, cls, tid, _c, src in read.get(last.label, []) if cls == "request" and tid in tids})
    codes: dict[str, int] = {}
    for m, cls, tid, code, _src in read.get(last.label, []) + read.get(first.label, []):
        if tid in allocs and cls == "error" and code is not None:
            codes[str(code)] = codes.get(str(code), 0) + 1
    out = {"points": points, "clients_at_turn": clients, "allocate_transactions": len(allocs)}
    fwd = [(p, counts) for p in forward if p.label in read
           for counts in [next(x for x in points if x["at"] == p.label)]]
    req = [(p, c["requests"].get("Allocate", 0)) for p, c in fwd]
    ans_by = {c["at"]: c["answers"].get("Allocate", 0) for _p, c in fwd}
    ans = [(p, ans_by[p.label]) for p in backward if p.label in ans_by]
    out["path"] = [p.node for p in forward if p.direction == "out"] + [forward[-1].node]
    what = "Allocate requests"
    if req and req[0][1] > len(allocs):
        what += f" ({len(allocs)} transaction{'s' if len(allocs) != 1 else ''} and {'their' if len(allocs) != 1 else 'its'} " \
                "retransmissions)"
    out["requests_where"], stop = _hops_sentence(req, what)
    if req and req[-1][1] > 0:
        if ans and ans[0][1]:
            out["replies_where"], stop = _hops_sentence(ans, "answers")
        else:
            out["replies_where"], stop = f"{turn} sent no answer to them", {"node": turn}
    if stop:
        out["stopped_at"] = stop
    return out


def _hops_sentence(counts: list[tuple[Point, int]], what: str) -> tuple[str, dict | None]:
    """'37 Allocate requests left agent1, 37 reached fw, 0 reached turn: dropped inside fw',
    and where they stopped: {"node": fw} or {"link": [a, b]} (None when they got through)."""
    if not counts:
        return f"no capture of the {what}", None
    start, n = counts[0]
    if n == 0:
        return f"no {what} left {start.node}", {"node": start.node}
    words = [f"{n} {what} left {start.node}"]
    for i in range(1, len(counts)):
        p, c = counts[i]
        prev, pc = counts[i - 1]
        if c == 0:
            dest = counts[-1][0].node
            if prev.node == p.node:       # arrived, never left: the node dropped them
                return ", ".join(words) + f", 0 reached {dest}: dropped inside {p.node}", {"node": p.node}
            return (", ".join(words) + f", 0 reached {p.node}: lost on the link from {prev.node}",
                    {"link": [prev.node, p.node]})
        if p.direction == "in":
            words.append(f"{c} reached {p.node}")
    end, c = counts[-1]
    return ", ".join(words) + ("" if c == n else ": some were lost on the way"), None


def turn_log_rows(entries: list[dict], clients: list[str], t0_wall: float) -> list[dict]:
    """The TURN transaction log's lines from the call's clients (as TURN saw them), with
    ``t`` on the scenario's clock."""
    want = set(clients)
    return [dict(e, t=round(e["t"] - t0_wall, 3)) for e in entries if e.get("client") in want]


def turn_log_summary(rows: list[dict], turn: str) -> str:
    """'TURN's log on turn: 9 Allocate (5 error 401, 4 success), 2 CreatePermission (2 success)'."""
    if not rows:
        return f"TURN's log on {turn} has no transaction from the agent"
    by: dict[str, dict[str, int]] = {}
    for r in rows:
        outcome = f"{r['outcome']} {r['code']}" if r.get("code") else r["outcome"]
        d = by.setdefault(r["method"], {})
        d[outcome] = d.get(outcome, 0) + 1
    return f"TURN's log on {turn}: " + ", ".join(
        f"{sum(d.values())} {m} (" + ", ".join(f"{n} {o}" for o, n in sorted(d.items())) + ")" for m, d in by.items())


def call_sentence(d: dict, log: str | None, backend: str | None, error: str | None = None) -> str:
    """Why a call failed, in one sentence from the evidence: captures, counters, the TURN log."""
    words = d.get("requests_where", d.get("where", ""))
    if words.startswith("no Allocate requests left") and error not in (None, "ice_collection_timeout"):
        return f"the softphone sent no Allocate request: it failed ({error}) before gathering candidates"
    if d.get("replies_where"):
        words += f"; {d['replies_where']}"
    if log is not None:
        words += "; " + log
    elif backend == "coturn":
        words += "; coturn keeps no transaction log here, so what TURN answered is known from the captures only"
    return words
