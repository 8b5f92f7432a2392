"""What each problem the lab reproduces looks like to the probe: the one place where the
signatures live, each beside the scenarios (``scenarios/*.yaml``) that reproduce it.

A signature reads the facts (``facts()``, derived once from the measurements) and returns a
finding or None. They are tried in order; a finding may *explain* others (a port-range
return rule also drops the TCP 443 handshakes the OS sends from the same ports), and an
explained signature is not reported again. Severity ``problem`` makes the verdict 1;
``note`` is information (a NAT, a relay time well inside the timers).

The confusion matrix in docs/probe.md and tests/probe/test_confusion.py checks these
against the lab's networks: each broken scenario is named by exactly the findings listing
it, each fixed one is healthy.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from .platforms import ephemeral_range

ICE_TIMER_MS = 8000          # DEFAULT_ICE_TIMEOUT_MS (reference softphone.md)
GUIDE_GATHER_MS = 10000      # the field guide's rule: gathering over 10 s means STUN is dropped
ENDPOINT_TEST_MS = 1000      # public endpoint tests: TURN's 401 within 1 s passes
GUIDE_RTT_MS = 200           # the field guide's checklist: RTT to the region under 200 ms
LOSS_LIMIT = 0.05            # 2 of the default 28 requests: one loss is noise
JITTER_LIMIT_MS = 30
LATE_MS = 100.0              # measure.LATE_MS (the probe's judging imports no socket code)
#: late packets in a row: one or two held back is a queue; a retransmission in a TCP tunnel
#: holds back every packet sent meanwhile (8-9 at 50 a second in vpn-full-tcp-lossy)
TUNNEL_RUN = 4
TUNNEL_PEAK_MS = 150.0       # the longest wait above the median: about a retransmission timeout


@dataclass
class Finding:
    id: str
    severity: str                   # problem, note
    sentence: str
    scenarios: list[str] = field(default_factory=list)
    evidence: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"id": self.id, "severity": self.severity, "sentence": self.sentence,
                "scenarios": self.scenarios, "evidence": self.evidence}


@dataclass
class Signature:
    id: str
    scenarios: list[str]            # scenarios/<name>.yaml reproducing it (may be empty)
    explains: tuple[str, ...]
    test: Callable[[dict], tuple[str, dict] | None]
    severity: str = "problem"


SIGNATURES: list[Signature] = []


def signature(id: str, scenarios: list[str], explains: tuple[str, ...] = (), severity: str = "problem"):
    def add(fn):
        SIGNATURES.append(Signature(id, scenarios, explains, fn, severity))
        return fn
    return add


def like(scenarios: list[str]) -> str:
    if not scenarios:
        return "no lab scenario reproduces this yet"
    names = [f"`scenarios/{s}.yaml`" for s in scenarios]
    return "like " + names[0] + (f" (also {', '.join(names[1:])})" if len(names) > 1 else "")


# -- facts ----------------------------------------------------------------------------

def facts(m: dict) -> dict:
    """Yes/no/unknown (None) answers the signatures share, from the measurements."""
    stun = m.get("stun") or {}
    sent = stun.get("sent") or 0
    udp = None
    if sent or stun.get("send_errors"):
        udp = "none" if not stun.get("replies") else ("partial" if stun.get("ports_silent") else "ok")
    sig = m.get("signalling") or {}
    sig_tcp = None if not sig or sig.get("error") else not sig.get("tcp_error")
    turn443 = [t for t in m.get("turn_tcp443", [])]
    turn443 += [t for t in m.get("turn", []) if t.get("transport") in ("tcp", "tls") and t["address"].endswith(":443")]
    turn_tcp = None if not turn443 else any("connect_ms" in t or "ms" in t or t.get("refused") for t in turn443)
    return {"udp": udp, "stun": stun, "sig": sig, "sig_tcp": sig_tcp, "turn_tcp443": turn_tcp,
            "os": m.get("os"), "turn": m.get("turn", []), "names": m.get("names", []),
            "stream": m.get("stream") or {}, "hold": m.get("hold") or {}}


# -- the signatures, most specific first -------------------------------------------------

@signature("dns-failed", [])
def _dns(f):
    bad = [n for n in f["names"] if not n.get("addresses")]
    if bad:
        return (f"{', '.join(n['name'] for n in bad)} did not resolve ({bad[0].get('error')}): "
                "the softphone cannot reach what it cannot name", {"names": bad})


@signature("outside-connect-ranges", ["allowlist-stale"], explains=("allowlist-stale", "udp3478-blocked"))
def _ranges(f):
    out = [(n["name"], a) for n in f["names"] for a, inside in (n.get("in_connect_ranges") or {}).items() if not inside]
    if out:
        listed = ", ".join(f"{n} {a}" for n, a in out)
        return (f"{listed}: not in the given ip-ranges.json's Connect ranges for the region: an allowlist "
                f"built from that file drops it", {"outside": out})


@signature("nothing-returns", ["stateless-no-return"], explains=("udp3478-blocked", "tcp443-blocked", "allowlist-stale"))
def _nothing(f):
    if f["udp"] == "none" and f["sig_tcp"] is False and f["turn_tcp443"] is not True:
        return ("UDP 3478 requests leave from every source port and no TCP 443 connection completes: no answer "
                "of any kind comes back. A stateless firewall without return rules does this (requests out, "
                "answers dropped), and so does a network that drops everything",
                {"stun_sent": f["stun"].get("sent"), "signalling": f["sig"].get("tcp_error")})


@signature("nat-port-pool", ["peak-hour-small-pool"], explains=("port-range-wrong", "tcp443-blocked", "allowlist-stale"))
def _pool(f):
    s = f["stun"]
    if f["udp"] != "partial" or not s.get("nat") or s.get("port_preserved"):
        return None
    ok, silent = s["ports_answered"], s["ports_silent"]
    outside = sorted({int(m.rsplit(":", 1)[1]) for m in s.get("reflexive", [])})
    if len(outside) > len(ok):
        return None
    return (f"behind a NAT, only {len(ok)} of {len(ok) + len(silent)} source ports got a mapping (outside ports "
            f"{_ports_list(outside)}; silent: {_ports_list(silent)}): the NAT's pool of outside ports (or its "
            "connection table) is full, as at peak hour when every agent's softphone holds a flow",
            {"answered": ok, "silent": silent, "outside_ports": outside})


@signature("port-range-wrong", ["port-range-wrong"], explains=("tcp443-blocked", "allowlist-stale"))
def _ports(f):
    if f["udp"] != "partial":
        return None
    ok, silent = f["stun"]["ports_answered"], f["stun"]["ports_silent"]
    lo, hi = ephemeral_range(f["os"])
    if min(ok) >= 49152 and max(silent) < 49152:
        return (f"replies reach source ports 49152-65535 only (answered: {_ports_list(ok)}; silent: "
                f"{_ports_list(silent)}): a stateless return rule for Windows ports, and this {f['os']} agent "
                f"sends from {lo}-{hi}; its TCP 443 handshakes from the same ports die the same way",
                {"answered": ok, "silent": silent})
    if max(ok) <= 61000 and min(silent) > 61000:
        return (f"replies reach source ports up to 61000 only (silent: {_ports_list(silent)}): a return rule "
                f"for the Linux range, and this {f['os']} agent sends from {lo}-{hi} (the mirror of port-range-wrong)",
                {"answered": ok, "silent": silent})
    return (f"some source ports never get an answer ({_ports_list(silent)}; answered: {_ports_list(ok)}): "
            "a return rule that opens part of the agent's ephemeral range", {"answered": ok, "silent": silent})


def _ports_list(ports) -> str:
    return ", ".join(str(p) for p in ports)


@signature("allowlist-stale", ["allowlist-stale"], explains=("udp3478-blocked",))
def _allowlist(f):
    if f["udp"] == "none" and f["turn_tcp443"] is False and f["sig_tcp"]:
        return ("the TURN server answers neither UDP 3478 nor TCP 443, while signalling answers on TCP 443: "
                "its address is missing from the firewall's allowlist (new ranges are published 30 days before "
                "use: allowlist the latest ip-ranges.json)", {})


@signature("udp3478-blocked", ["udp3478-blocked", "vpn-full-udp3478-blocked", "vdi-in-desktop-udp3478-blocked"])
def _udp(f):
    if f["udp"] == "none" and f["sig_tcp"] is not False:
        tcp = " while TCP 443 to the TURN server connects" if f["turn_tcp443"] else ""
        if f["stun"].get("send_errors") and not f["stun"].get("sent"):
            return (f"this machine refuses to send UDP 3478 ({f['stun']['send_errors'][0]}): a local firewall "
                    "blocks it (the softphone's relay-only ICE then fails with ice_collection_timeout at 8 s)",
                    {"send_errors": f["stun"]["send_errors"]})
        return (f"UDP 3478 requests leave, no reply comes back from any source port{tcp}: UDP 3478 is "
                "blocked on the way (the softphone's relay-only ICE then fails with ice_collection_timeout at 8 s)",
                {"sent": f["stun"].get("sent"), "ports": f["stun"].get("ports_silent")})


@signature("tcp443-blocked", ["tcp443-blocked"])
def _tcp(f):
    if f["sig_tcp"] is False:
        return (f"TCP 443 to signalling never completes ({f['sig'].get('tcp_error')}): the softphone cannot open "
                "its signalling WebSocket (signalling_connection_failure)", {"error": f["sig"].get("tcp_error")})


@signature("tls-failed", [])
def _tls(f):
    if f["sig"].get("tls_error"):
        return (f"TCP 443 to signalling connects but the TLS handshake fails ({f['sig']['tls_error']}): "
                "a TLS-inspecting proxy or a missing CA", {"error": f["sig"]["tls_error"]})


@signature("websocket-blocked", [])
def _ws(f):
    if f["sig"].get("ws_error") and not f["sig"].get("tls_error"):
        return (f"TLS to signalling works but the WebSocket upgrade gets no HTTP answer ({f['sig']['ws_error']}): "
                "a proxy that does not pass WebSockets", {"error": f["sig"]["ws_error"]})


@signature("turn-no-401", [])
def _no401(f):
    bad = [t for t in f["turn"] if t.get("unauth_ms") is not None and
           not (t.get("unauth_code") == 401 and t.get("realm") and t.get("nonce"))]
    if bad:
        t = bad[0]
        return (f"TURN {t['address']} answers an unauthenticated Allocate with {t.get('unauth_code')} instead "
                "of 401 with REALM and NONCE: Chrome ignores such answers and gathering never completes",
                {"turn": bad})


@signature("turn-auth-failed", [])
def _auth(f):
    bad = [t for t in f["turn"] if t.get("auth_code") is not None or t.get("auth_error")]
    if bad:
        t = bad[0]
        return (f"TURN {t['address']} refuses the media info's credentials "
                f"({t.get('auth_code') or t.get('auth_error')}): expired or wrong TURN credentials", {"turn": bad})


@signature("relay-slow", [])
def _slow(f):
    slow = [t for t in f["turn"] if (t.get("relay_ms") or 0) > ICE_TIMER_MS]
    if slow:
        t = slow[0]
        return (f"the relay candidate took {t['relay_ms'] / 1000:.1f} s ({t['url']}): past the softphone's 8 s "
                "ICE timer, which ends in ice_collection_timeout", {"turn": slow})


@signature("nat-hold", ["nat-hold-30s", "persistent-nat-reboot"])
def _hold(f):
    h = f["hold"]
    if h.get("before_ms") is None or h.get("after_ms") is not None:
        return None
    moved = h.get("mapped_after") and h.get("mapped_before") and h["mapped_after"] != h["mapped_before"]
    # proof that the NAT forgot: a new outside address once this machine spoke again, or
    # (a NAT that gives the same one back) data arriving again through it
    if not (moved or h.get("again_ms") is not None):
        return None
    how = (f"this machine's next packet got a new outside address ({h['mapped_before']} became {h['mapped_after']})"
           if moved else "it did again as soon as this machine sent a packet")
    return (f"after {h['idle_s']:g} s without a packet, data from TURN no longer reached this machine, and {how}: "
            f"the NAT forgets a silent UDP mapping within {h['idle_s']:g} s (RFC 4787 asks for at least 2 min). "
            "A call is never that silent (audio at 50 packets a second even when muted, consent checks every 5 s), "
            "so calls survive it; anything that does go silent loses its way back", {"hold": h})


#: a TCP tunnel's signature in the audio-like stream: enough packets to meet its losses
TUNNEL_MIN_PACKETS = 100


@signature("tcp-tunnel", ["vpn-full-tcp-lossy"], explains=("rtt-high",))
def _tunnel(f):
    # explains rtt-high: the sweep's few requests meet the tunnel's stalls too, and its
    # median can land on them
    s = f["stream"]
    runs = s.get("late_runs") or []
    if (s.get("sent") or 0) >= TUNNEL_MIN_PACKETS and s.get("replies") == s.get("sent") and \
            any(r >= TUNNEL_RUN for r in runs) and s["rtt_max_ms"] - s["rtt_ms"] >= TUNNEL_PEAK_MS:
        return (f"of {s['sent']} packets sent at the audio's rate none was lost, but {s['late']} came back "
                f"more than {LATE_MS:.0f} ms late (up to {s['rtt_max_ms']:.0f} ms, median {s['rtt_ms']:.0f} ms), "
                f"several in a row each time: the packets ride a TCP tunnel (a full-tunnel VPN over TCP) that "
                "turns every loss on the way into a wait for its retransmission: jittery, late audio. Split-tunnel "
                "the Connect ranges", {"late": s["late"], "late_runs": runs, "rtt_max_ms": s["rtt_max_ms"]})


@signature("rtt-high", ["rtt250-loss5"])
def _rtt(f):
    rtt = f["stun"].get("rtt_ms")
    if rtt is not None and rtt > GUIDE_RTT_MS:
        return (f"RTT {rtt:.0f} ms to TURN: above the guide's 200 ms. The lab's sweep (docs/scenarios.md) says "
                "calls still connect at this RTT with 5 % loss (they connect up to 800 ms); the conversation suffers",
                {"rtt_ms": rtt})


@signature("loss", ["rtt250-loss5"])
def _loss(f):
    # the stream's 300 packets measure loss better than the sweep's 28, when it ran and its
    # port answered at all (one that never does is a port-range or NAT-pool question)
    st = f["stream"]
    loss = st.get("loss") if (st.get("sent") or 0) >= TUNNEL_MIN_PACKETS and st.get("replies") else f["stun"].get("loss")
    if loss is not None and loss >= LOSS_LIMIT:
        return (f"{loss:.0%} of the STUN requests got no answer: the lab's sweep says calls still connect up to "
                "20 % loss each way at 250 ms; audio loses about as much", {"loss": loss})


@signature("jitter", [], severity="note")
def _jitter(f):
    j = f["stun"].get("jitter_ms")
    if j is not None and j > JITTER_LIMIT_MS:
        return f"round trips vary by {j:.0f} ms between requests: expect jittery audio", {"jitter_ms": j}


@signature("relay-time", [], severity="note")
def _relay(f):
    done = [t for t in f["turn"] if t.get("relay_ms") is not None and t["relay_ms"] <= ICE_TIMER_MS]
    if done:
        t = min(done, key=lambda t: t["relay_ms"])
        return (f"first relay candidate after {t['relay_ms']:.0f} ms ({t['url']}): the softphone's ICE timer is "
                f"8 s, the guide's rule 10 s", {"relay_ms": t["relay_ms"]})


@signature("nat", [], severity="note")
def _nat(f):
    s = f["stun"]
    if s.get("nat"):
        sym = {True: "; the mapping changes per destination (symmetric)", False: "; one mapping for every destination",
               None: ""}[s.get("mapping_changes_per_destination")]
        return (f"behind a NAT: reflexive address {', '.join(s['reflexive'][:3])}{sym}. The softphone is "
                "relay-only, so this alone is harmless", {"reflexive": s["reflexive"]})


#: broken scenarios no probe an ordinary user can run tells from their fixed twin, and why:
#: the probe calls them healthy (rightly, for the network), and the matrix names them so
UNSEEN = {
    "vdi-redirect-unavailable": (
        "the media-redirection plug-in missing on the thin client is software, not the network: the desktop's "
        "path to TURN and signalling is the same as a working desktop's (the lab models the plug-in in the "
        "softphone, which waits 10 s and reports vdi_redir_not_supported; nothing differs on the wire)"),
    "midcall-nat-reboot": (
        "a NAT that reboots mid-call is an event, not a property of the network a probe can measure beforehand: "
        "the same symmetric NAT as persistent-midcall-nat-reboot, and what differs is the softphone's persistent "
        "connection (the ICE restart it allows)"),
    "mdns-obfuscated": (
        "a browser setting that, as the scenario itself shows, changes nothing on the wire for a relay-only "
        "softphone: the same network as mdns-plain, the same relay candidate as fast"),
}


#: fixed scenarios whose fix is the softphone's, not the network's: the same network as their
#: broken twin, so the probe names the twin's finding there too (rightly, for the network)
SAME_NETWORK = {
    "persistent-off-nat-reboot": (
        "persistent-nat-reboot",
        "the fix is the softphone's setting (no persistent peer connection), not the network: the same NAT, "
        "whose 5 s UDP timeout the probe names (nat-hold) in both"),
}


def findings(m: dict) -> list[Finding]:
    f = facts(m)
    out: list[Finding] = []
    explained: set[str] = set()
    for sig in SIGNATURES:
        if sig.id in explained:
            continue
        got = sig.test(f)
        if got is None:
            continue
        sentence, evidence = got
        if sig.severity == "problem":
            sentence += ": " + like(sig.scenarios)
        out.append(Finding(sig.id, sig.severity, sentence, list(sig.scenarios), evidence))
        explained.update(sig.explains)
    return out


def verdict(found: list[Finding]) -> str:
    return "problem" if any(x.severity == "problem" for x in found) else "healthy"
