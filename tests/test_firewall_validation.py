"""Firewall and nat topologies: meaning checks with golden messages, ip-ranges sets, presets,
rendering; a user's nftables file checked by nft itself (in a throwaway namespace)."""

import ipaddress
import subprocess
import sys

import pytest

from lab.model import InputError, load_topology
from lab.model.firewall import load_ip_ranges
from lab.net import firewall, nat
from lab.net.render import script


def problems(path) -> list[str]:
    with pytest.raises(InputError) as exc:
        load_topology(path)
    return [str(p) for p in exc.value.problems]


def test_firewall_mistakes_have_golden_messages(repo):
    got = problems(repo / "tests/topologies/fw-bad.yaml")
    expected = (repo / "tests/topologies/fw-bad.expected").read_text().rstrip("\n")
    assert "\n".join(got).replace(str(repo) + "/", "") == expected


def test_golden_messages_name_the_mistakes(repo):
    text = "\n".join(problems(repo / "tests/topologies/fw-bad.yaml"))
    assert "rules[0].dst: unknown set or node 'turn-servers'" in text          # unknown set
    assert "rules[1].port[1]: port range 3000-4000 overlaps 3478" in text      # overlapping ports
    assert "rules[2].src: unknown set or node 'agent3'" in text                # unknown node
    assert "hint: did you mean 'agent2'?" in text
    assert "presets[0].to: unknown set or node 'conect'" in text and "did you mean 'connect'?" in text
    assert "inside[1]: 'agent1' is not a neighbour of 'fw'" in text
    assert "unknown node 'fw'" not in text        # a broken rule does not hide the node


def test_every_example_topology_is_valid(repo):
    r = subprocess.run([sys.executable, "-m", "lab.cli", "validate", *sorted(map(str, (repo / "topologies").glob("*.yaml")))],
                       capture_output=True, text=True, cwd=repo)
    assert r.returncode == 0, r.stdout + r.stderr


def test_ip_ranges_filtered_by_service_and_region(repo):
    current, msg, _ = load_ip_ranges(repo / "topologies/ip-ranges/current.json", "AMAZON_CONNECT", "us-east-1")
    stale, _, _ = load_ip_ranges(repo / "topologies/ip-ranges/stale.json", "AMAZON_CONNECT", "us-east-1")
    assert msg is None and current == ["203.0.113.0/28", "203.0.113.32/27"]
    turn = ipaddress.ip_address("203.0.113.10")
    assert any(turn in ipaddress.ip_network(p) for p in current)
    assert not any(turn in ipaddress.ip_network(p) for p in stale)     # the new range is missing
    eu, _, _ = load_ip_ranges(repo / "topologies/ip-ranges/current.json", "AMAZON_CONNECT", "eu-west-2")
    assert eu == ["192.0.2.128/26"]
    none, msg, hint = load_ip_ranges(repo / "topologies/ip-ranges/current.json", "AMAZON_CONNECT", "mars-1")
    assert none is None and "no prefixes" in msg and "us-east-1" in hint


def test_stateful_rendering_uses_conntrack_and_counts_every_rule(repo):
    topo = load_topology(repo / "topologies/office-firewall.yaml")
    text = firewall.ruleset("fw", topo.nodes["fw"].policy)
    assert "ct state established,related" in text and "notrack" not in text
    assert "elements = { 203.0.113.0/28, 203.0.113.32/27 }" in text
    rules = [line for line in text.splitlines() if "comment \"r" in line]
    assert len(rules) == len(topo.nodes["fw"].policy.rules) and all("counter" in r.split() for r in rules)
    assert rules[-1].strip() == ('update @refused_r10 { ip saddr . meta l4proto . th sport } '
                                 'counter drop comment "r10: default drop, inbound"')
    # one table, loaded atomically with nft -f inside the node's namespace
    assert "nft -f - <<'NFT'" in script(topo, topo.nodes["fw"]) and text.count("table ") == 1


def test_stateless_rendering_has_no_conntrack_and_the_return_rules(repo):
    topo = load_topology(repo / "topologies/office-stateless-firewall.yaml")
    p = topo.nodes["fw"].policy
    text = firewall.ruleset("fw", p)
    assert "notrack" in text and "ct state" not in text
    ret = [r for r in p.rules if r.name.startswith("softphone") and r.direction == "inbound"]
    # Windows 49152-65535 and Linux 32768-61000 merged into one range nft accepts
    assert [(r.proto, r.sport, r.dport) for r in ret] == [("tcp", [(443, 443)], [(32768, 65535)]),
                                                          ("udp", [(3478, 3478)], [(32768, 65535)])]


def test_windows_only_preset_opens_windows_ephemeral_ports(repo):
    text = (repo / "topologies/office-stateless-firewall.yaml").read_text().replace(
        "{name: softphone, to: connect}", "{name: softphone, to: connect, clients: [windows]}")
    topo = load_topology("x.yaml", text=text.replace("ip-ranges/", str(repo / "topologies/ip-ranges") + "/"))
    ret = [r for r in topo.nodes["fw"].policy.rules if r.name.startswith("softphone") and r.direction == "inbound"]
    assert all(r.dport == [(49152, 65535)] for r in ret)


def test_host_ephemeral_ports_are_set_inside_the_host_only(repo):
    topo = load_topology(repo / "topologies/office-firewall.yaml")
    assert topo.nodes["agent1"].ephemeral_ports == (49152, 65535)
    assert topo.nodes["agent2"].ephemeral_ports == (32768, 61000)
    assert "net.ipv4.ip_local_port_range='49152 65535'" in script(topo, topo.nodes["agent1"])
    assert "ip_local_port_range" not in script(topo, topo.nodes["turn"])


def test_nat_rendering_per_type(repo):
    base = (repo / "topologies/office-nat.yaml").read_text()
    words = {"port-restricted": "masquerade comment", "symmetric": "masquerade fully-random",
             "full-cone": "dnat ip to 10.10.0.2"}
    for typ, word in words.items():
        text = base.replace("type: port-restricted", f"type: {typ}" + (", host: agent1" if typ == "full-cone" else ""))
        topo = load_topology("office-nat.yaml", text=text)
        p = topo.nodes["nat"].policy
        assert word in nat.ruleset("nat", p)
        assert p.public == "198.51.100.1"
        assert "nf_conntrack_udp_timeout=30" in script(topo, topo.nodes["nat"])


@pytest.mark.root
def test_user_ruleset_syntax_error_gives_nfts_message_and_builds_nothing(repo):
    text = "\n".join(problems(repo / "tests/topologies/fw-syntax.yaml"))
    assert "nodes.fw.ruleset: nft rejects the ruleset" in text
    assert "fw-syntax.nft:4:" in text and "syntax error" in text        # nft's file and line
    assert "hint: fix the file; variables available: $inside, $outside" in text
    r = subprocess.run([sys.executable, "-m", "lab.cli", "check", "tests/topologies/fw-syntax.yaml"],
                       capture_output=True, text=True, cwd=repo)
    assert r.returncode == 2 and "nothing was built" in r.stderr


@pytest.mark.root
def test_checking_a_user_ruleset_never_touches_the_root_ruleset(repo):
    before = subprocess.run(["nft", "list", "ruleset"], capture_output=True, text=True).stdout
    topo = load_topology(repo / "topologies/office-firewall-nft.yaml")
    assert topo.nodes["fw"].policy.ruleset.name == "office-firewall.nft"
    problems(repo / "tests/topologies/fw-syntax.yaml")
    assert subprocess.run(["nft", "list", "ruleset"], capture_output=True, text=True).stdout == before


def test_reachability_model_knows_nat_and_icmp_policies(repo):
    from lab.net.reach import plan
    expected = {(p.src, p.dst): p.expected for p in plan(load_topology(repo / "topologies/office-nat.yaml"))}
    assert expected[("agent1", "turn")] and not expected[("turn", "agent1")]    # nothing mapped from outside
    path = repo / "topologies/office-firewall.yaml"
    topo = load_topology(path, text=path.read_text().replace("mode: stateful", "mode: stateful\n    icmp: drop"))
    expected = {(p.src, p.dst): p.expected for p in plan(topo)}
    assert not expected[("agent1", "turn")] and not expected[("turn", "agent1")] and expected[("agent1", "agent2")]


def test_hostile_ip_ranges_files_are_refused_quickly(tmp_path):
    import time
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100_000 + "]" * 100_000)
    big = tmp_path / "big.json"
    big.write_text('{"prefixes": [' + ", ".join(['{"ip_prefix": "192.0.2.0/24"}'] * 600_000) + "]}")
    start = time.monotonic()
    assert load_ip_ranges(deep, None, None)[1] == "ip-ranges file " + str(deep) + " is nested too deep to read"
    none, msg, hint = load_ip_ranges(big, None, None)
    assert none is None and "is larger than 16 MB" in msg and "about 2 MB" in hint
    assert time.monotonic() - start < 2.0


@pytest.mark.parametrize("spec, words", [
    ({"port": []}, "port: an empty list of ports matches every port, not none (hint: "),
    ({"sport": []}, "sport: an empty list of ports matches every port"),
    ({"port": True}, "port: true is not a port (YAML reads yes, on and true as true)"),
    ({"port": [443, False]}, "port: false is not a port"),
    ({"dst": []}, "dst: an empty list of addresses matches every address"),
])
def test_rules_added_at_run_time_refuse_what_would_match_everything(repo, spec, words):
    from lab.model.firewall import rule_from_spec
    topo = load_topology(repo / "topologies/office-firewall.yaml")
    with pytest.raises(ValueError) as info:
        rule_from_spec(topo, "fw", {"direction": "outbound", "action": "drop", "proto": "udp", **spec})
    assert words in str(info.value)


def test_a_rule_with_ports_and_addresses_still_resolves(repo):
    from lab.model.firewall import rule_from_spec
    topo = load_topology(repo / "topologies/office-firewall.yaml")
    r = rule_from_spec(topo, "fw", {"direction": "outbound", "action": "drop", "proto": "udp",
                                    "port": [3478, "49152-65535"], "dst": "any"})
    assert r.dport == [(3478, 3478), (49152, 65535)] and r.dst == []
