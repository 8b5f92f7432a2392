"""Crafted packets (scapy) through stateful and stateless firewalls: every rule's verdict in
both directions, delivery checked at the far end, each packet attributed to its rule by
the per-rule counters."""

import json
import subprocess
import sys
import time

import pytest

from lab.model import load_topology
from lab.net import Network, firewall, nat
from packets import Sniffer, ping, rule_hits, send, syn, udp

pytestmark = pytest.mark.root

TURN, SIGNALLING, AGENT1, AGENT2, RESOLVER = "203.0.113.10", "203.0.113.40", "10.10.0.2", "10.10.0.3", "198.51.100.53"
def case(net, policy, src: str, pkt, dst_node: str | None, rule: int, delivered: bool | None) -> None:
    """Send ``pkt`` from ``src``; the rules of its direction must count it once, on ``rule``;
    it must (not) reach ``dst_node``."""
    fw = net.node("fw").pid
    direction = next(r.direction for r in policy.rules if r.number == rule)
    mine = {r.number for r in policy.rules if r.direction == direction}
    sniffer = Sniffer(net, dst_node) if dst_node else None
    try:
        before = rule_hits(fw)
        send(net, src, pkt)
        deadline = time.monotonic() + 2
        while True:
            after = rule_hits(fw)
            delta = {n: after[n] - before.get(n, 0) for n in after if n in mine and after[n] != before.get(n, 0)}
            if delta or time.monotonic() > deadline:
                break
            time.sleep(0.01)
        assert delta == {rule: 1}, f"{pkt.summary()}: expected rule {rule}, counters moved {delta}"
        if sniffer is not None:
            assert sniffer.saw(pkt, 1.0 if delivered else 0.1) == delivered, \
                f"{pkt.summary()}: {'not ' if delivered else ''}delivered to {dst_node}"
    finally:
        if sniffer:
            sniffer.close()
    time.sleep(0.03)     # let the far end's own answers (RST, ICMP) pass before the next case


def test_stateful_firewall_rule_by_rule(repo):
    topo = load_topology(repo / "topologies/office-firewall.yaml")
    p = topo.nodes["fw"].policy
    names = {r.number: r.name for r in p.rules}
    assert names[6] == "softphone: TURN UDP 3478 out" and names[10] == "default drop, inbound"
    with Network(topo, start_services=False) as net:   # crafted packets only: no server answers
        c = lambda *a: case(net, p, *a)  # noqa: E731
        c("agent1", udp(AGENT1, TURN, 50000, 3478), "turn", 6, True)            # TURN out: allowed
        c("turn", udp(TURN, AGENT1, 3478, 50000), "agent1", 2, True)            # its reply: conntrack
        c("turn", udp(TURN, AGENT1, 3478, 50001), "agent1", 10, False)          # unsolicited: default drop
        c("agent1", syn(AGENT1, SIGNALLING, 40000, 443), "signalling", 5, True) # signalling out
        c("agent1", syn(AGENT1, SIGNALLING, 40001, 80), "signalling", 9, False) # not listed: default drop
        c("agent1", udp(AGENT1, "192.0.2.200", 50002, 3478), None, 9, None)         # 3478 outside the Connect ranges
        c("agent1", udp(AGENT1, RESOLVER, 50003, 53), None, 7, None)            # dns
        c("turn", syn(TURN, AGENT1, 40002, 23), "agent1", 8, False)             # telnet in: reject (logged)
        c("agent1", ping(AGENT1, TURN), "turn", 3, True)                        # icmp out
        c("turn", ping(TURN, AGENT1), "agent1", 4, True)                        # icmp in
        # a firewall "reboot": conntrack forgotten, the reply is now unsolicited
        nat.flush_conntrack(net.node("fw").pid)
        c("turn", udp(TURN, AGENT1, 3478, 50000), "agent1", 10, False)
        # the report's view: `icelab fw show LAB NODE --json`
        r = subprocess.run([sys.executable, "-m", "lab.cli", "fw", "show", topo.name, "fw", "--json"],
                           capture_output=True, text=True, cwd=repo)
        assert r.returncode == 0, r.stderr
        rows = {row["number"]: row for row in json.loads(r.stdout)["rules"]}
        assert rows[10]["name"] == "default drop, inbound" and rows[10]["packets"] == 2
        assert rows[9]["packets"] == 2 and rows[6]["packets"] >= 1
        # who was refused, per rule: the report's sentence
        assert rows[10]["refused"] == [{"address": TURN, "proto": "udp", "port": 3478, "packets": 2}]
        c10 = next(c for c in firewall.counters(net.node("fw").pid) if c.number == 10)
        assert c10.sentence() == "rule 10 (default drop, inbound) dropped 2 packets from 203.0.113.10:3478/udp (2)"
        assert "default drop, inbound" in subprocess.run(
            [sys.executable, "-m", "lab.cli", "fw", "show", topo.name, "fw"], capture_output=True, text=True, cwd=repo).stdout
        # the firewall's table lives in its namespace only
        assert "table inet icelab" in net.cmd("fw", "nft list tables")
        assert "icelab" not in subprocess.run(["nft", "list", "tables"], capture_output=True, text=True).stdout


def test_stateless_firewall_needs_return_rules(repo):
    path = repo / "topologies/office-stateless-firewall.yaml"
    # only the Windows return range: the Linux agent's replies (port 40000) have no rule
    text = path.read_text().replace("{name: softphone, to: connect}",
                                    "{name: softphone, to: connect, clients: [windows]}")
    topo = load_topology(path, text=text)
    p = topo.nodes["fw"].policy
    names = {r.number: r.name for r in p.rules}
    assert names[6] == "softphone: UDP 3478 return to ephemeral ports" and names[11] == "default drop, inbound"
    assert "notrack" in firewall.ruleset("fw", p)
    with Network(topo, start_services=False) as net:   # crafted packets only: no server answers
        c = lambda *a: case(net, p, *a)  # noqa: E731
        assert net.cmd("agent2", "sysctl -n net.ipv4.ip_local_port_range").split() == ["32768", "61000"]
        assert net.cmd("agent1", "sysctl -n net.ipv4.ip_local_port_range").split() == ["49152", "65535"]
        c("agent1", udp(AGENT1, TURN, 50000, 3478), "turn", 4, True)            # Windows agent out
        c("turn", udp(TURN, AGENT1, 3478, 50000), "agent1", 6, True)            # return rule lets it back
        c("agent2", udp(AGENT2, TURN, 40000, 3478), "turn", 4, True)            # Linux agent out: allowed
        c("turn", udp(TURN, AGENT2, 3478, 40000), "agent2", 11, False)          # ... its reply dropped
        c("turn", udp(TURN, AGENT1, 3478, 20000), "agent1", 11, False)          # not an ephemeral port
        # the fix, at run time: the Linux return rule
        with pytest.raises(ValueError, match="unknown set or node 'conect'"):
            firewall.add(net, "fw", {"direction": "inbound", "action": "accept", "src": "conect"})
        rule = firewall.add(net, "fw", {"name": "linux return", "direction": "inbound", "action": "accept",
                                        "proto": "udp", "src": "connect", "sport": 3478, "port": "32768-61000"})
        assert rule.number == 12 and p is net.topo.nodes["fw"].policy
        c("turn", udp(TURN, AGENT2, 3478, 40000), "agent2", 12, True)
        c("agent1", syn(AGENT1, SIGNALLING, 50001, 443), "signalling", 3, True)
        c("signalling", syn(SIGNALLING, AGENT1, 443, 50001, "SA"), "agent1", 5, True)
        c("agent1", udp(AGENT1, RESOLVER, 50002, 53), None, 7, None)
        c("isp", udp(RESOLVER, AGENT1, 53, 50002), "agent1", 8, True)           # dns reply: its own rule
        c("turn", syn(TURN, AGENT1, 40003, 23), "agent1", 9, False)
        c("agent1", udp(AGENT1, TURN, 50003, 5000), "turn", 10, False)
        firewall.add(net, "fw", {"name": "no 5001", "direction": "outbound", "action": "drop", "proto": "udp", "port": 5001})
        c("agent1", udp(AGENT1, TURN, 50003, 5001), "turn", 13, False)
        assert next(x for x in firewall.counters(net.node("fw").pid) if x.number == 13).remote() == f"{TURN}:5001/udp"
        c("agent1", ping(AGENT1, TURN), "turn", 1, True)
        c("turn", ping(TURN, AGENT1), "agent1", 2, True)
        # no connection tracking at all in the firewall
        listing = net.cmd("fw", "nft list ruleset")
        assert [line.strip() for line in listing.splitlines()].count("notrack") == 2 and "ct state" not in listing


def test_stale_ip_ranges_block_the_new_turn_range(repo):
    path = repo / "topologies/office-firewall.yaml"
    topo = load_topology(path, text=path.read_text().replace("current.json", "stale.json"))
    p = topo.nodes["fw"].policy
    with Network(topo, start_services=False) as net:   # crafted packets only: no server answers
        case(net, p, "agent1", udp(AGENT1, TURN, 50000, 3478), "turn", 9, False)     # default drop
        case(net, p, "agent1", syn(AGENT1, SIGNALLING, 40000, 443), "signalling", 5, True)


def test_user_ruleset_is_loaded_verbatim_with_lab_variables(repo):
    topo = load_topology(repo / "topologies/office-firewall-nft.yaml")
    with Network(topo, start_services=False) as net:   # crafted packets only: no server answers
        fw = net.node("fw").pid
        assert "table inet office" in net.cmd("fw", "nft list tables")
        send(net, "agent1", udp(AGENT1, TURN, 50000, 3478))
        send(net, "agent1", udp(AGENT1, TURN, 50000, 9999))
        deadline = time.monotonic() + 2
        while rule_hits(fw).get(5, 0) < 1 and time.monotonic() < deadline:
            time.sleep(0.02)
        hits = rule_hits(fw)
        assert hits[3] == 1 and hits[5] == 1
