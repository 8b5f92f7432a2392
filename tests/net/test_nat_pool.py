"""A NAT's outside source-port pool (nat node 'ports:'): rendered as a masquerade to the range
for the protocols that have ports, plain masquerade for the rest. The pool running out in a
lab is the peak-hour pair (scenarios/peak-hour-*.yaml)."""

from pathlib import Path

from lab.model import load_topology
from lab.net.nat import ruleset

ROOT = Path(__file__).resolve().parents[2]


def _edge(ports: str | None, typ: str = "port-restricted"):
    text = (ROOT / "topologies/peak-office.yaml").read_text()
    opts = f", ports: {ports}" if ports else ""
    text = text.replace("{kind: nat, type: port-restricted,", f"{{kind: nat, type: {typ}{opts},")
    return load_topology("peak.yaml", text=text).nodes["edge"]


def test_a_pool_is_a_masquerade_to_its_ports_for_tcp_and_udp():
    edge = _edge("50000-50001")
    assert edge.policy.ports == (50000, 50001)
    assert edge.policy.to_dict()["ports"] == [50000, 50001]
    rules = ruleset("edge", edge.policy)
    assert 'meta l4proto { tcp, udp } counter masquerade to :50000-50001 comment "r5: masquerade to :50000-50001"' in rules
    assert 'counter masquerade comment "r6: masquerade (other protocols)"' in rules


def test_a_symmetric_nat_keeps_random_ports_inside_its_pool():
    rules = ruleset("edge", _edge("50000-50063", "symmetric").policy)
    assert "masquerade to :50000-50063 fully-random" in rules


def test_without_a_pool_the_ruleset_is_as_it_was():
    edge = _edge(None)
    assert "ports" not in edge.policy.to_dict()
    rules = ruleset("edge", edge.policy)
    assert 'counter masquerade comment "r5: masquerade"' in rules and "r6" not in rules
