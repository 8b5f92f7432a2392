"""Labs built for real: namespaces, veths, bridges, routes; reachability as the model says."""

import subprocess
import time

import pytest

from lab.model import load_topology
from lab.core.errors import LabError
from lab.net import Network, procs
from lab.net.reach import measure, plan

pytestmark = pytest.mark.root


def test_starter_topology_builds_and_every_host_reaches_every_other(repo):
    topo = load_topology(repo / "topologies/agent-lan.yaml")
    with Network(topo) as net:
        probes = measure(net, plan(topo, ("host", "router")))
        assert all(p.expected for p in probes), "the starter topology is fully routed"
        wrong = [p.to_dict() for p in probes if not p.ok]
        assert not wrong
        # the kernel's own view matches the model: addresses and routes as resolved
        assert "10.10.0.2/24" in net.cmd("agent1", "ip -4 -o addr show dev eth0")
        assert net.cmd("agent1", "ip route show default").split()[:3] == ["default", "via", "10.10.0.1"]
        assert net.cmd("edge", "sysctl -n net.ipv4.ip_forward").strip() == "1"
        assert net.cmd("agent1", "sysctl -n net.ipv4.ip_forward").strip() == "0"
        # the lan is a Linux bridge inside its own namespace, with the hosts as ports
        ports = net.cmd("office-lan", "bridge link show")
        for port in ("agent1", "agent2", "edge"):
            assert f"{port}" in ports and "master office-lan" in ports


def test_tcp_crosses_the_lab(repo):
    topo = load_topology(repo / "topologies/agent-lan.yaml")
    with Network(topo) as net:
        server = net.node("signalling").popen(
            ["socat", "-u", "TCP-LISTEN:8443,reuseaddr", "OPEN:/dev/stdout"], stdout=subprocess.PIPE)
        try:
            out = ""
            for _ in range(50):
                out = net.cmd("agent1", "echo hello-from-agent1 | socat -u STDIN TCP:203.0.113.3:8443 && echo sent")
                if "sent" in out:
                    break
                time.sleep(0.05)
            assert "sent" in out
            data, _ = server.communicate(timeout=5)
            assert data.strip() == b"hello-from-agent1"
        finally:
            if server.poll() is None:
                server.kill()
                server.wait()


def test_unroutable_hosts_are_not_reached(repo):
    topo = load_topology(repo / "tests/topologies/unroutable.yaml")
    probes = plan(topo)
    unreachable = {(p.src, p.dst) for p in probes if not p.expected}
    assert ("printer", "turn") in unreachable and ("kiosk", "media") in unreachable
    assert ("kiosk", "backoffice") not in unreachable      # its static route covers 10/8
    assert ("printer", "agent1") not in unreachable        # on-link needs no route
    with Network(topo) as net:
        measure(net, probes)
    wrong = [p.to_dict() for p in probes if not p.ok]
    assert not wrong, wrong
    assert sum(not p.measured for p in probes) == len(unreachable)


def test_nothing_of_the_lab_is_in_the_root_namespace(repo):
    topo = load_topology(repo / "topologies/agent-lan.yaml")
    root_links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    with Network(topo) as net:
        during = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
        assert during == root_links
        inodes = {n.netns for n in net.state.nodes.values()}
        # pid 1's namespace may not be readable here (root_netns() None): host_netns() still knows ours
        assert not inodes & procs.host_netns()
        assert len(inodes) == len(topo.nodes), "every node, lans included, has a namespace of its own"


def test_two_labs_with_different_names_do_not_interfere(repo):
    topo = load_topology(repo / "topologies/agent-lan.yaml")
    a, b = Network(topo.renamed("twin-a")), Network(topo.renamed("twin-b"))
    with a, b:
        # the same addresses live in both, each in its own namespaces
        assert not set(n.netns for n in a.state.nodes.values()) & set(n.netns for n in b.state.nodes.values())
        ma = a.cmd("turn", "ip -o link show eth0").split()[16]   # the MAC differs: derived from the lab name
        mb = b.cmd("turn", "ip -o link show eth0").split()[16]
        assert ma != mb
        for net in (a, b):
            assert " 0% packet loss" in net.cmd("agent1", "ping -c2 -i0.2 -W1 203.0.113.2")
        a.teardown()
        assert " 0% packet loss" in b.cmd("agent1", "ping -c2 -i0.2 -W1 203.0.113.2")


def test_a_lab_name_cannot_be_built_twice(repo):
    topo = load_topology(repo / "topologies/agent-lan.yaml")
    with Network(topo.renamed("once")):
        with pytest.raises(LabError, match="already up"):
            with Network(topo.renamed("once")):
                pass


def test_exception_during_build_leaves_nothing(repo, monkeypatch):
    topo = load_topology(repo / "topologies/agent-lan.yaml")

    def broken(self):
        raise RuntimeError("configuration exploded")
    monkeypatch.setattr(Network, "_configure", broken)
    with pytest.raises(RuntimeError, match="exploded"):
        with Network(topo.renamed("boom")):
            pass


def test_exception_while_running_leaves_nothing(repo):
    topo = load_topology(repo / "topologies/agent-lan.yaml")
    with pytest.raises(ZeroDivisionError):
        with Network(topo.renamed("boom2")) as net:
            # a process of the lab's own, which teardown must end too
            net.node("turn").popen(["sleep", "300"])
            1 / 0


def test_build_and_teardown_times_are_recorded(repo):
    topo = load_topology(repo / "topologies/agent-lan.yaml")
    with Network(topo.renamed("timed")) as net:
        assert set(net.timings) >= {"nodes", "links", "config", "ready", "total"}
        # behaviour, not a benchmark: the lab is usable once build() returns
        assert " 0% packet loss" in net.cmd("agent2", "ping -c1 -W1 203.0.113.4")
