"""Diagnosis of a call from synthetic captures (no lab): STUN/TURN transactions counted per
capture point by transaction ID, the sentence, and the TURN log summary."""

import os
import struct

from scapy.layers.inet import IP, UDP
from scapy.utils import wrpcap

from lab.scenario.diagnose import (_hops_sentence, diagnose_call, path_points, stun_header,
                                   turn_log_rows, turn_log_summary)
from lab.scenario.load import load_scenario

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
COOKIE = b"\x21\x12\xa4\x42"


def stun(method: int, cls: int, tid: bytes, code: int | None = None) -> bytes:
    """RFC 8489 section 5: class bits C1 (0x100) and C0 (0x010) interleaved with the method."""
    t = (method & 0x000F) | ((method & 0x0070) << 1) | ((method & 0x0F80) << 2)
    t |= ((cls & 2) << 7) | ((cls & 1) << 4)
    attrs = b""
    if code is not None:
        reason = b"Unauthorized"
        body = b"\x00\x00" + bytes([code // 100, code % 100]) + reason
        attrs = struct.pack("!HH", 0x0009, len(body)) + body + b"\x00" * (-len(body) % 4)
    return struct.pack("!HH", t, len(attrs)) + COOKIE + tid + attrs


def test_stun_header_reads_method_class_transaction_and_error_code():
    tid = os.urandom(12)
    assert stun_header(stun(3, 0, tid)) == ("Allocate", "request", tid, None)
    assert stun_header(stun(3, 3, tid, 401)) == ("Allocate", "error", tid, 401)
    assert stun_header(stun(1, 2, tid))[:2] == ("Binding", "success")
    assert stun_header(stun(9, 0, tid))[0] == "ChannelBind"
    assert stun_header(b"\x40\x00\x00\x04abcd") is None          # ChannelData is not STUN
    assert stun_header(b"\x00\x01\x00\x00" + b"\x00" * 16) is None  # no magic cookie


def test_a_call_dropped_inside_the_firewall(tmp_path):
    topo = load_scenario(ROOT / "scenarios/udp3478-blocked.yaml").topology
    agent, turn = "10.10.0.2", str(topo.address_of("turn"))
    tids = [os.urandom(12) for _ in range(2)]
    # two Allocate transactions, the first retransmitted twice; a probe's Binding from another socket
    sent = [IP(src=agent, dst=turn) / UDP(sport=50000, dport=3478) / stun(3, 0, t) for t in (tids[0], tids[0], tids[0], tids[1])]
    probe = [IP(src=agent, dst=turn) / UDP(sport=40000, dport=3478) / stun(1, 0, os.urandom(12))]
    pcaps = {}
    for p in path_points(topo, "agent1", topo.address_of("turn")):
        got = sent + probe if p.node in ("agent1",) or p.label == "fw:eth0" else []
        pcaps[p.label] = tmp_path / f"{p.node}-{p.interface}.pcap"
        wrpcap(str(pcaps[p.label]), got or [IP() / UDP(sport=1, dport=2)])
    d = diagnose_call(topo, "agent1", "turn", pcaps)
    assert d["allocate_transactions"] == 2 and d["path"] == ["agent1", "fw", "isp", "region", "turn"]
    assert d["requests_where"] == ("4 Allocate requests (2 transactions and their retransmissions) left agent1, "
                                   "4 reached fw, 0 reached turn: dropped inside fw")
    assert d["stopped_at"] == {"node": "fw"} and d["clients_at_turn"] == []
    first = d["points"][0]
    assert first["requests"] == {"Allocate": 4} and first["transactions"] == 2     # the probe is not the call's


def test_hop_sentences_place_a_loss_on_a_link():
    from lab.scenario.diagnose import Point
    pts = [Point("agent1", "eth0", "out"), Point("isp", "eth0", "in"), Point("isp", "eth1", "out"),
           Point("turn", "eth0", "in")]
    text, stop = _hops_sentence(list(zip(pts, [5, 5, 5, 0])), "answers")
    assert text == "5 answers left agent1, 5 reached isp, 0 reached turn: lost on the link from isp"
    assert stop == {"link": ["isp", "turn"]}
    text, stop = _hops_sentence(list(zip(pts, [5, 5, 5, 5])), "answers")
    assert stop is None and text.endswith("5 reached turn")


def test_turn_log_rows_of_the_call_and_their_summary():
    log = [{"t": 100.5, "client": "198.51.100.1:4000", "transport": "udp", "method": "Allocate", "outcome": "error",
            "code": 401, "latency_ms": 0.2},
           {"t": 100.6, "client": "198.51.100.1:4000", "transport": "udp", "method": "Allocate", "outcome": "success",
            "code": None, "latency_ms": 0.3},
           {"t": 100.7, "client": "203.0.113.40:5000", "transport": "udp", "method": "Allocate", "outcome": "success",
            "code": None, "latency_ms": 0.3}]
    rows = turn_log_rows(log, ["198.51.100.1:4000"], 100.0)
    assert [r["t"] for r in rows] == [0.5, 0.6]
    assert turn_log_summary(rows, "turn") == "TURN's log on turn: 2 Allocate (1 error 401, 1 success)"
    assert turn_log_summary([], "turn") == "TURN's log on turn has no transaction from the agent"


def test_the_capture_reader_agrees_with_scapy(tmp_path):
    from scapy.layers.inet import TCP
    from scapy.layers.inet6 import IPv6
    from scapy.layers.l2 import ARP, Ether
    from lab.scenario.pcap import packets
    pkts = [Ether() / IP(src="10.0.0.1", dst="10.0.0.2") / UDP(sport=5000, dport=3478) / b"hello",
            Ether() / IP(src="10.0.0.2", dst="10.0.0.1") / TCP(sport=443, dport=40000, flags="SA"),
            Ether() / IPv6() / UDP(sport=1, dport=2), Ether() / ARP(),
            Ether() / IP(src="10.0.0.3", dst="10.0.0.4", frag=10, proto=17) / b"a later fragment"]
    wrpcap(str(tmp_path / "x.pcap"), pkts)
    got = list(packets(tmp_path / "x.pcap"))
    assert [(p.src, p.dst, p.proto, p.sport, p.dport) for p in got] == [
        ("10.0.0.1", "10.0.0.2", 17, 5000, 3478), ("10.0.0.2", "10.0.0.1", 6, 443, 40000)]
    assert got[0].payload == b"hello" and got[1].flags == 0x12
    assert list(packets(tmp_path / "missing.pcap")) == []


def test_a_softphone_that_never_gathered_is_not_blamed_on_the_network():
    from lab.scenario.diagnose import call_sentence
    d = {"requests_where": "no Allocate requests left agent1"}
    assert call_sentence(d, None, "embedded", "signalling_connection_failure") == (
        "the softphone sent no Allocate request: it failed (signalling_connection_failure) before gathering candidates")
    assert call_sentence(d, "TURN's log on turn has no transaction from the agent", "embedded",
                         "ice_collection_timeout").startswith("no Allocate requests left agent1; TURN's log")


def test_a_tcp_probe_counts_connections_not_retransmitted_syns(tmp_path):
    """Two TCP probes, the first SYN retransmitted once (its SYN-ACK too): 2 requests and 2
    replies, not 3 and 3 ("2 sent, 3 arrived")."""
    from scapy.layers.inet import TCP
    from scapy.layers.l2 import Ether
    from lab.scenario.diagnose import count_probe_packets
    a, b = "10.0.0.1", "10.0.0.2"
    syn = lambda sport: Ether() / IP(src=a, dst=b) / TCP(sport=sport, dport=443, flags="S", seq=1000 + sport)
    synack = lambda dport: Ether() / IP(src=b, dst=a) / TCP(sport=443, dport=dport, flags="SA", seq=7 + dport)
    pkts = [syn(40001), syn(40001), synack(40001), synack(40001), syn(40002), synack(40002),
            Ether() / IP(src=a, dst=b) / TCP(sport=40002, dport=443, flags="A")]
    wrpcap(str(tmp_path / "x.pcap"), pkts)
    assert count_probe_packets(tmp_path / "x.pcap", "run", "tcp", 443) == (2, 2)
    # --sport: every connection from the same port, each with a sequence number of its own
    fixed = [Ether() / IP(src=a, dst=b) / TCP(sport=5000, dport=443, flags="S", seq=s) for s in (1, 1, 2, 3)]
    wrpcap(str(tmp_path / "y.pcap"), fixed)
    assert count_probe_packets(tmp_path / "y.pcap", "run", "tcp", 443) == (3, 0)
