"""NAT types measured RFC 5780-style (nat-check) against what the topology declares;
conntrack timeouts per namespace; conntrack flush."""

import json
import subprocess
import sys
import time

import pytest

from lab.model import load_topology
from lab.net import Network, firewall, nat
from lab.net.natcheck import check

pytestmark = pytest.mark.root

EXPECTED = {
    "port-restricted": ("endpoint-independent", "address-and-port-dependent"),
    "symmetric": ("address-and-port-dependent", "address-and-port-dependent"),
    "full-cone": ("endpoint-independent", "endpoint-independent"),
}


def nat_topology(repo, typ: str, extra: str = ""):
    path = repo / "topologies/office-nat.yaml"
    text = path.read_text().replace("type: port-restricted", f"type: {typ}" + extra)
    return load_topology(path, text=text)


@pytest.mark.parametrize("typ", list(EXPECTED))
def test_nat_check_measures_the_declared_type(repo, typ):
    topo = nat_topology(repo, typ, ", host: agent1" if typ == "full-cone" else "")
    with Network(topo) as net:
        pids = {n: m.pid for n, m in net.nodes.items()}
        res = check(topo.to_dict(), pids, "agent1")
        assert res.nat == "nat" and res.declared_type == typ
        assert (res.mapping, res.filtering) == EXPECTED[typ]
        assert res.ok
        ports = {a.split(":")[1] for a in res.mapped}
        assert all(a.startswith("198.51.100.1:") for a in res.mapped)       # the nat's outside address
        assert (len(ports) == 1) == (typ != "symmetric")
        if typ == "port-restricted":
            # the command line says the same, and exits 0 when measured == declared
            r = subprocess.run([sys.executable, "-m", "lab.cli", "nat-check", topo.name, "agent1", "--json"],
                               capture_output=True, text=True, cwd=repo)
            assert r.returncode == 0, r.stderr
            out = json.loads(r.stdout)
            assert out["ok"] and out["measured"] == {"mapping": EXPECTED[typ][0], "filtering": EXPECTED[typ][1]}
            # a host outside the nat: nothing declared, nothing translated
            outside = check(topo.to_dict(), pids, "turn")
            assert outside.nat is None and outside.ok is None
            assert (outside.mapping, outside.filtering) == ("endpoint-independent", "endpoint-independent")
            assert outside.mapped[0].split(":")[0] == str(topo.address_of("turn"))


def test_conntrack_timeouts_are_per_namespace_and_flush_forgets_mappings(repo):
    path = repo / "topologies/office-nat.yaml"
    topo = load_topology(path, text=path.read_text().replace("udp_timeout: 30", "udp_timeout: 17"))
    root = open("/proc/sys/net/netfilter/nf_conntrack_udp_timeout").read().strip()
    with Network(topo) as net:
        assert net.cmd("nat", "sysctl -n net.netfilter.nf_conntrack_udp_timeout").strip() == "17"
        assert net.cmd("nat", "sysctl -n net.netfilter.nf_conntrack_udp_timeout_stream").strip() == "120"
        assert net.cmd("isp", "sysctl -n net.netfilter.nf_conntrack_udp_timeout").strip() != "17" or root == "17"
        pid = net.node("nat").pid
        net.cmd("agent1", "ping -c1 -W1 203.0.113.2")
        assert "203.0.113.2" in _conntrack(pid)
        nat.flush_conntrack(pid)
        assert "203.0.113.2" not in _conntrack(pid)
        # the nat's counters are readable like a firewall's
        assert any(c.name == "masquerade" and c.packets >= 1 for c in firewall.counters(pid))
    assert open("/proc/sys/net/netfilter/nf_conntrack_udp_timeout").read().strip() == root


def _conntrack(pid: int) -> str:
    try:
        return open(f"/proc/{pid}/net/nf_conntrack").read()
    except FileNotFoundError:       # no procfs view: ask the kernel through nft's ct expression
        return firewall.nft(pid, "list", "ruleset")


def test_icelab_check_agrees_with_the_nat(repo):
    r = subprocess.run([sys.executable, "-m", "lab.cli", "check", "topologies/office-nat.yaml", "--json"],
                       capture_output=True, text=True, cwd=repo)
    out = json.loads(r.stdout)
    assert r.returncode == 0 and out["mismatches"] == 0
    assert any(not p["expected"] and not p["measured"] for p in out["probes"])   # outside -> inside: dropped


def test_udp_conntrack_timeout_forgets_the_mapping(repo):
    """udp_timeout: 1 s. A reply within it reaches the inside host through the mapping;
    the same reply after it finds no mapping and dies at the nat."""
    from packets import Sniffer, send, udp
    path = repo / "topologies/office-nat.yaml"
    topo = load_topology(path, text=path.read_text().replace("udp_timeout: 30", "udp_timeout: 1"))
    stun, agent, public = "203.0.113.2", "10.10.0.2", "198.51.100.1"
    with Network(topo) as net:
        arrived = udp(stun, agent, 3478, 50000)          # what agent1 sees after the nat
        sniffer = Sniffer(net, "agent1")
        try:
            send(net, "agent1", udp(agent, stun, 50000, 3478))
            time.sleep(0.1)
            send(net, "stun", udp(stun, public, 3478, 50000))   # mapping kept the port (EIM)
            assert sniffer.saw(arrived, 1.0)
            time.sleep(1.6)
            send(net, "stun", udp(stun, public, 3478, 50000))
            assert not sniffer.saw(arrived, 0.3)
        finally:
            sniffer.close()
