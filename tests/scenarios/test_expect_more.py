"""The expectations the RTT, NAT and mDNS pairs added, evaluated without a lab:
what the invite carried (candidates) and how many mappings a NAT created."""

from pathlib import Path

import pytest

from lab.core.errors import InputError
from lab.scenario.expect import evaluate
from lab.scenario.load import load_scenario

ROOT = Path(__file__).resolve().parents[2]


def _scenario(tmp_path, expect: str, topology="agent-lan.yaml"):
    f = tmp_path / "q.yaml"
    f.write_text(f"""name: q
topology: {ROOT / 'topologies' / topology}
timeline:
  - {{at: 0s, call: {{from: agent1, talk: 3s, mdns: true}}}}
expect:
  - {expect}
""")
    return load_scenario(f)


def _call(*candidates):
    tl = [{"t": 0.01, "kind": "candidate", "name": n, "candidate": c} for n, c in candidates]
    return {"call:agent1": {"reached_talking": True, "quality": {"silent_audio": False}, "times": {}, "timeline": tl}}


RELAY = "candidate:1 1 udp 767 203.0.113.10 50000 typ relay raddr 0.0.0.0 rport 0"
HOST = "candidate:2 1 udp 2130706431 1f0c-4a.local 40000 typ host"


def test_candidates_hold_when_the_invite_carried_only_the_allowed_types(tmp_path):
    s = _scenario(tmp_path, "{call: agent1, sent_candidates: [relay]}")
    [c] = evaluate(s, _call(("host", HOST), ("relay", RELAY)))
    assert c.status == "pass", c.observed
    assert "invite carried 1 candidate (relay 203.0.113.10)" in c.observed and "1f0c-4a.local" in c.observed
    [c] = evaluate(s, _call(("relay", RELAY.replace("typ relay", "typ host"))))
    assert c.status == "fail"
    [c] = evaluate(s, _call())                    # no candidate at all is not "only relay"
    assert c.status == "fail"


def _nat_counters(packets):
    return {"firewall:nat": {"rules": [{"number": 2, "action": "drop", "packets": 7},
                                       {"number": 5, "action": "masquerade", "packets": packets}]}}


def test_nat_mappings_are_the_masquerade_counter(tmp_path):
    s = _scenario(tmp_path, "{nat: nat, mappings: 3}", "office-nat.yaml")
    [c] = evaluate(s, _nat_counters(3))
    assert c.status == "pass" and c.observed == "nat created 3 mappings"
    [c] = evaluate(s, _nat_counters(4))
    assert c.status == "fail"
    s = _scenario(tmp_path, "{nat: nat, mappings: '<= 3'}", "office-nat.yaml")
    assert evaluate(s, _nat_counters(2))[0].status == "pass"
    assert evaluate(s, {})[0].status == "error"   # never read: an error, not a pass


@pytest.mark.parametrize("expect, words", [
    ("{nat: edge, mappings: 3}", "not a NAT node"),
    ("{nat: nat, mappings: 'three'}", "is not a count"),
    ("{nat: nat}", "checks nothing"),
])
def test_bad_nat_expectations(tmp_path, expect, words):
    topo = "agent-lan.yaml" if "edge" in expect else "office-nat.yaml"
    with pytest.raises(InputError) as e:
        _scenario(tmp_path, expect, topo)
    assert any(words in p.message for p in e.value.problems), e.value


def test_mdns_holds_only_when_the_host_candidates_were_named(tmp_path):
    on = _scenario(tmp_path, "{call: agent1, mdns: true}")
    off = _scenario(tmp_path, "{call: agent1, mdns: false}")
    named = _call(("host", HOST), ("relay", RELAY))
    plain = _call(("host", HOST.replace("1f0c-4a.local", "10.10.0.2")), ("relay", RELAY))
    assert evaluate(on, named)[0].status == "pass" and evaluate(on, plain)[0].status == "fail"
    assert evaluate(off, plain)[0].status == "pass" and evaluate(off, named)[0].status == "fail"
    assert evaluate(on, _call(("relay", RELAY)))[0].status == "fail"    # no host candidate: nothing to judge by
