"""Bad VPN declarations: every problem with file, line, path and hint (golden messages).

Each case puts one broken ``vpn:`` field (on agent1) or one broken vpn node (vpn-gw) into
an otherwise valid home-to-data-centre topology. A change to a message is a change people
see: review it, then update the expected text here.
"""

import subprocess
import sys

import pytest

from lab.model import InputError, load_topology

BASE = """\
name: t
internet: isp
nodes:
  agent1:
    kind: host
    role: agent
    vpn: {vpn}
  home-lan: {{kind: lan, subnet: 192.168.1.0/24}}
  home: {{kind: router}}
  isp: {{kind: router}}
  vpn-gw: {gw}
  turn: {{kind: host, services: [turn, signalling, media]}}
links:
  - {{a: agent1, b: home-lan}}
  - {{a: home, b: home-lan}}
  - {{a: home, b: isp}}
  - {{a: isp, b: vpn-gw, subnet: 192.0.2.0/30}}
  - {{a: isp, b: turn, subnet: 203.0.113.0/30}}
"""
GW = "{kind: vpn}"

CASES = {
    "unknown-concentrator": ("{concentrator: vpn-gq}", GW, """\
vpn.yaml:7: nodes.agent1.vpn.concentrator: unknown node 'vpn-gq'
    hint: did you mean 'vpn-gw'? vpn nodes: vpn-gw"""),
    "concentrator-is-a-router": ("{concentrator: isp}", GW, """\
vpn.yaml:7: nodes.agent1.vpn.concentrator: 'isp' is a router, not a vpn concentrator
    hint: vpn nodes: vpn-gw"""),
    "no-vpn-node-at-all": ("{concentrator: isp}", "{kind: router}", """\
vpn.yaml:7: nodes.agent1.vpn.concentrator: 'isp' is a router, not a vpn concentrator
    hint: declare the concentrator with 'kind: vpn' (a router that terminates tunnels)"""),
    "bypass-not-prefix-nor-node": ("{concentrator: vpn-gw, mode: split, bypass: [turm, 203.0.113.0/33, 203.0.113.1/30, 10.1.2.3]}", GW, """\
vpn.yaml:7: nodes.agent1.vpn.bypass[0]: 'turm' is neither a prefix nor a node name
    hint: did you mean 'turn'? nodes: agent1, home, home-lan, isp, turn, vpn-gw
vpn.yaml:7: nodes.agent1.vpn.bypass[1]: '203.0.113.0/33' is not an IPv4 prefix
    hint: write it as address/length, e.g. 10.1.0.0/24
vpn.yaml:7: nodes.agent1.vpn.bypass[2]: '203.0.113.1/30' has host bits set
    hint: did you mean 203.0.113.0/30?"""),
    "bypass-not-text": ("{concentrator: vpn-gw, mode: split, bypass: [7]}", GW, """\
vpn.yaml:7: nodes.agent1.vpn.bypass[0]: must be a text value, not a number"""),
    "transport": ("{concentrator: vpn-gw, transport: ipsec}", GW, """\
vpn.yaml:7: nodes.agent1.vpn.transport: 'ipsec' is not allowed here
    hint: use one of 'udp' or 'tcp'"""),
    "mode": ("{concentrator: vpn-gw, mode: partial}", GW, """\
vpn.yaml:7: nodes.agent1.vpn.mode: 'partial' is not allowed here
    hint: use one of 'full' or 'split'"""),
    "full-with-bypass": ("{concentrator: vpn-gw, bypass: [turn]}", GW, """\
vpn.yaml:7: nodes.agent1.vpn.bypass: a full tunnel has no bypass: everything goes through it
    hint: set 'mode: split' to send these destinations through the home network"""),
    "split-without-bypass": ("{concentrator: vpn-gw, mode: split}", GW, """\
vpn.yaml:7: nodes.agent1.vpn.mode: a split tunnel needs 'bypass': the destinations that avoid the tunnel
    hint: add e.g. 'bypass: [turn, 203.0.113.0/26]', or set 'mode: full'"""),
    "unknown-field": ("{concentrator: vpn-gw, protocol: udp}", GW, """\
vpn.yaml:7: nodes.agent1.vpn.protocol: unknown field 'protocol'
    hint: allowed fields: bypass, concentrator, mode, port, transport"""),
    "no-concentrator": ("{transport: tcp}", GW, """\
vpn.yaml:7: nodes.agent1.vpn: required field 'concentrator' is missing
    hint: name the vpn node that terminates the tunnel: vpn: {concentrator: vpn-gw}"""),
    "port": ("{concentrator: vpn-gw, port: 70000}", GW, """\
vpn.yaml:7: nodes.agent1.vpn.port: 70000 is out of range: input should be less than or equal to 65535"""),
    "tunnel-overlaps": ("{concentrator: vpn-gw}", "{kind: vpn, tunnel: 192.168.1.0/25}", """\
vpn.yaml:11: nodes.vpn-gw.tunnel: 192.168.1.0/25 overlaps 192.168.1.0/24, already used in the lab
    hint: every tunnel needs a prefix of its own"""),
    "tunnel-public": ("{concentrator: vpn-gw}", "{kind: vpn, tunnel: 8.8.8.0/24}", """\
vpn.yaml:11: nodes.vpn-gw.tunnel: 8.8.8.0/24 is not a private (10/8, 172.16/12, 192.168/16, 100.64/10) or documentation (192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24) range
    hint: tunnel addresses are inside addresses: take a private range"""),
    "tunnel-too-small": ("{concentrator: vpn-gw}", "{kind: vpn, tunnel: 10.9.0.0/30}", """\
vpn.yaml:11: nodes.vpn-gw.tunnel: 10.9.0.0/30 is too small for 1 tunnel (each needs at least a /29)
    hint: use a larger prefix, e.g. a /24"""),
    "vpn-node-field": ("{concentrator: vpn-gw}", "{kind: vpn, tunel: 10.9.0.0/24}", """\
vpn.yaml:11: nodes.vpn-gw.tunel: unknown field 'tunel'
    hint: did you mean 'tunnel'? allowed fields: kind, label, routes, tunnel, zone"""),
}


def _problems(vpn: str, gw: str) -> str:
    with pytest.raises(InputError) as info:
        load_topology("vpn.yaml", text=BASE.format(vpn=vpn, gw=gw))
    return "\n".join(str(p) for p in info.value.problems)


@pytest.mark.parametrize("case", CASES)
def test_golden_message(case):
    vpn, gw, expected = CASES[case]
    assert _problems(vpn, gw) == expected


def test_the_base_topology_is_valid_and_resolved():
    topo = load_topology("vpn.yaml", text=BASE.format(vpn="{concentrator: vpn-gw, transport: tcp}", gw=GW))
    client = topo.nodes["agent1"].vpn
    assert (client.proto, client.port, client.mode, str(client.remote)) == ("tcp", 443, "full", "192.0.2.2")
    [tunnel] = topo.nodes["vpn-gw"].tunnels
    assert str(tunnel.subnet) == "10.200.0.0/24" and tunnel.clients == ["agent1"]
    assert topo.nodes["vpn-gw"].forwards


def test_bypass_takes_prefixes_addresses_nodes_and_lans():
    vpn = "{concentrator: vpn-gw, mode: split, bypass: [turn, home-lan, 198.51.100.0/24, 10.1.2.3]}"
    topo = load_topology("vpn.yaml", text=BASE.format(vpn=vpn, gw=GW))
    assert [str(b) for b in topo.nodes["agent1"].vpn.bypass] == [
        "203.0.113.2/32", "192.168.1.0/24", "198.51.100.0/24", "10.1.2.3/32"]


def test_every_problem_at_once():
    vpn = "{concentrator: isp, mode: split, bypass: [turm]}"
    text = _problems(vpn, "{kind: vpn, tunnel: 8.8.8.0/24}")
    assert "'isp' is a router" in text and "'turm' is neither" in text and "8.8.8.0/24 is not" in text


def test_the_examples_validate(repo):
    r = subprocess.run([sys.executable, "-m", "lab.cli", "validate", "topologies/vpn-full.yaml",
                        "topologies/vpn-split.yaml"], capture_output=True, text=True, cwd=repo, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr


def test_the_cli_exits_2_on_a_bad_vpn(tmp_path, repo):
    bad = tmp_path / "bad.yaml"
    bad.write_text(BASE.format(vpn="{concentrator: nowhere}", gw=GW))
    r = subprocess.run([sys.executable, "-m", "lab.cli", "validate", str(bad)],
                       capture_output=True, text=True, cwd=repo, timeout=60)
    assert r.returncode == 2 and "nodes.agent1.vpn.concentrator: unknown node 'nowhere'" in r.stdout + r.stderr
