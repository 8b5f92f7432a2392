"""A firewall rule toggled off and on from the page keeps its identity there: nft's table gets
it back under the next free number (the lab never reuses one), but the page's row keeps the
number the trainer knows, its place, and its counter from where it was; off, on and delete go
on working with that number. A real lab (the firewall's nft table), no services."""

from __future__ import annotations

import time

import pytest

from lab.model import load_topology
from lab.net import Network, firewall
from lab.serve.live import LiveLab

pytestmark = pytest.mark.root
LAB = "sv-rules"
TURN_UDP = 6            # "softphone: TURN UDP 3478 out" in topologies/office-firewall.yaml


def send_turn_udp(net, n: int) -> None:
    """``n`` datagrams from agent1 to the TURN server's 3478: what rule 6 counts."""
    turn = str(net.topo.address_of("turn"))
    code = ("import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); "
            f"[s.sendto(b'x', ({turn!r}, 3478)) for _ in range({n})]")
    r = net.node("agent1").popen(["python3", "-c", code])
    assert r.wait(10) == 0
    time.sleep(0.1)


def row(live: LiveLab, number: int) -> dict:
    rows = live.counters()["rules"]["fw"]
    found = [r for r in rows if r["number"] == number]
    assert len(found) == 1, rows
    return found[0]


def test_a_rule_toggled_off_and_on_keeps_its_number_row_and_count(repo):
    topo = load_topology(repo / "topologies/office-firewall.yaml", name=LAB)
    events = []
    with Network(topo, start_services=False) as net:
        live = LiveLab(net, events.append)
        order = [r["number"] for r in live.counters()["rules"]["fw"]]
        send_turn_udp(net, 3)
        assert row(live, TURN_UDP)["packets"] == 3

        assert live.rule_toggle("fw", TURN_UDP, False).startswith("rule 6 (softphone: TURN UDP 3478 out) off after it counted 3")
        assert row(live, TURN_UDP)["enabled"] is False
        said = live.rule_toggle("fw", TURN_UDP, True)
        assert said.startswith("rule 6 (softphone: TURN UDP 3478 out) on again")

        # nft has it under a new number; the page does not
        numbers = {c.number for c in firewall.counters(net.node("fw").pid)}
        assert TURN_UDP not in numbers
        r = row(live, TURN_UDP)
        assert r["enabled"] is True and r["live_number"] in numbers and r["live_number"] > max(order)
        assert [x["number"] for x in live.counters()["rules"]["fw"]] == order          # the same rows, in place
        assert [x["number"] for x in live.node_info("fw")["rules"]] == order        # the node panel's table too
        assert r["packets"] == 3                                                     # the count goes on ...
        send_turn_udp(net, 2)
        assert row(live, TURN_UDP)["packets"] == 5                                   # ... and rises
        assert row(live, TURN_UDP)["sentence"].startswith("rule 6 (softphone: TURN UDP 3478 out) accepted 5 packets")

        # back in its place in the chain: before the rules that followed it (the default drop counts nothing)
        drops_before = row(live, 9)["packets"]
        send_turn_udp(net, 1)
        assert row(live, 9)["packets"] == drops_before

        # off and on again by the same number, any number of times
        live.rule_toggle("fw", TURN_UDP, False)
        send_turn_udp(net, 2)                                # dropped by the default rule meanwhile
        assert row(live, TURN_UDP)["enabled"] is False and row(live, TURN_UDP)["packets"] == 6
        assert row(live, 9)["packets"] == drops_before + 2
        live.rule_toggle("fw", TURN_UDP, True)
        r2 = row(live, TURN_UDP)
        assert r2["enabled"] and r2["packets"] == 6 and r2["live_number"] != TURN_UDP
        assert [x["number"] for x in live.counters()["rules"]["fw"]] == order

        # and deleted by it
        live.rule_delete("fw", TURN_UDP)
        assert TURN_UDP not in [x["number"] for x in live.counters()["rules"]["fw"]]
        assert r2["live_number"] not in {c.number for c in firewall.counters(net.node("fw").pid)}
