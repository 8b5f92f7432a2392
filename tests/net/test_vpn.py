"""OpenVPN tunnels for real: what the underlay carries, where traffic leaves, teardown.

One lab (tests/topologies/vpn-home.yaml) holds three home agents behind one home router:
agent1 full tunnel over UDP 1194, agent2 split tunnel over UDP (TURN and signalling
bypass it), agent3 full tunnel over TCP 443. Captures run inside the lab's namespaces:
on the home router's uplink (the underlay), on the concentrator, on the TURN host.
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lab.model import load_topology
from lab.core.errors import LabError
from lab.net import Network, procs
from lab.net import vpn as netvpn
from lab.net.reach import measure, plan

AGENT = {"agent1": "192.168.1.2", "agent2": "192.168.1.3", "agent3": "192.168.1.4"}
CONCENTRATOR = "192.0.2.2"
TURN, SIGNALLING, MEDIA = "203.0.113.2", "203.0.113.3", "203.0.113.4"


ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def topo():
    return load_topology(ROOT / "tests/topologies/vpn-home.yaml")


class Capture:
    """tcpdump inside a node's namespace, written to a file, read back with -n."""

    def __init__(self, net, node: str, ifname: str, bpf: str, path: Path):
        self.path = path
        self.proc = net.node(node).popen(["tcpdump", "-i", ifname, "-n", "-U", "--immediate-mode", "-w", str(path), *bpf.split()],
                                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        seen = ""
        while "listening on" not in seen:                  # printed once it captures
            line = self.proc.stderr.readline().decode()
            assert line, seen
            seen += line

    def lines(self) -> list[str]:
        time.sleep(0.2)
        self.proc.send_signal(signal.SIGINT)
        self.proc.wait(timeout=5)
        out = subprocess.run(["tcpdump", "-r", str(self.path), "-n"], capture_output=True, text=True).stdout
        return [l for l in out.splitlines() if " IP " in l]


def _involving(lines: list[str], addr: str) -> list[str]:
    pat = re.compile(rf"\b{re.escape(addr)}(\.\d+)?[ :]")
    return [l for l in lines if pat.search(l)]


def _rtt(out: str) -> float:
    m = re.search(r"= [\d.]+/([\d.]+)/", out)
    assert m, out
    return float(m.group(1))


@pytest.mark.root
def test_openvpn_carries_full_and_split_tunnels(topo, tmp_path):
    with Network(topo) as net:
        run = net.vpn
        pids = [p.pid for p in run.procs.values()]
        assert len(pids) == 5          # two server instances (udp 1194, tcp 443) and three clients
        # the routes the concentrator pushed: the default through the tunnel, the
        # concentrator itself and (split) the bypassed hosts through the home router
        r1 = net.cmd("agent1", "ip -4 route")
        assert "0.0.0.0/1 via 10.200.0.1 dev vpn0" in r1 and "128.0.0.0/1 via 10.200.0.1 dev vpn0" in r1
        assert f"{CONCENTRATOR} via 192.168.1.1 dev eth0" in r1
        r2 = net.cmd("agent2", "ip -4 route")
        assert f"{TURN} via 192.168.1.1 dev eth0" in r2 and f"{SIGNALLING} via 192.168.1.1 dev eth0" in r2
        assert "0.0.0.0/1 via 10.200.0.1 dev vpn0" in r2
        assert "vpn0" in net.cmd("agent3", "ip -o link show vpn0")

        up = Capture(net, "home-router", "uplink", "ip", tmp_path / "uplink.pcap")
        at_turn = Capture(net, "turn", "eth0", "udp port 3478", tmp_path / "turn.pcap")
        at_gw = Capture(net, "vpn-gw", "any", "udp port 3478", tmp_path / "gw.pcap")
        for agent in AGENT:
            out = net.cmd(agent, f"for i in 1 2 3; do echo stun-$i; done | socat -u - UDP:{TURN}:3478 && echo sent")
            assert "sent" in out
        rtt = {agent: net.cmd(agent, f"ping -n -q -c 10 -i 0.05 {SIGNALLING}") for agent in AGENT}
        media = net.cmd("agent2", f"ping -n -q -c 2 -i 0.05 {MEDIA}")
        underlay, turn_seen, gw_seen = up.lines(), at_turn.lines(), at_gw.lines()

        # full tunnel over UDP: on the underlay, agent1 talks to the concentrator's 1194 only
        a1 = _involving(underlay, AGENT["agent1"])
        assert a1 and all(f"{CONCENTRATOR}.1194" in l and "UDP" in l for l in a1), a1
        # full tunnel over TCP: agent3, to the concentrator's 443 only
        a3 = _involving(underlay, AGENT["agent3"])
        assert a3 and all(f"{CONCENTRATOR}.443" in l and "UDP" not in l for l in a3), a3
        # split tunnel: agent2's STUN and ping to the bypassed hosts are plain on the
        # underlay; its traffic to the media host (not bypassed) is in the tunnel
        a2 = _involving(underlay, AGENT["agent2"])
        assert any(f"{AGENT['agent2']}." in l and f"> {TURN}.3478: UDP" in l for l in a2), a2
        assert any(f"{SIGNALLING}: ICMP echo request" in l for l in a2), a2
        assert not _involving(a2, MEDIA) and any(f"{CONCENTRATOR}.1194" in l for l in a2)
        assert " 0% packet loss" in media
        # the TURN host sees full-tunnel traffic from the data centre's address, split
        # traffic from the home address
        # (one datagram per agent: socat sends what it reads at once)
        assert len([l for l in turn_seen if f"{CONCENTRATOR}." in l.split(">")[0]]) == 2, turn_seen
        assert len(_involving(turn_seen, AGENT["agent2"])) == 1, turn_seen
        assert not _involving(turn_seen, AGENT["agent1"]) and not _involving(turn_seen, AGENT["agent3"])
        # ... and the concentrator sees it arrive from the tunnel (10.200.0.x) and leave masqueraded
        assert any(l.split(" IP ")[1].startswith("10.200.0.") for l in gw_seen), gw_seen
        # who reaches whom, measured, is what the model predicts with the tunnels in it
        wrong = [p.to_dict() for p in measure(net, plan(topo)) if not p.ok]
        assert not wrong
        print("\nRTT to signalling (ms): " + ", ".join(
            f"{a} {netvpn_mode(topo, a)} {_rtt(out):.3f}" for a, out in rtt.items()))
    # teardown: the OpenVPN processes are gone with the namespaces (and with them the tun
    # devices and the pushed routes); conftest checks namespaces and the root namespace
    assert not [p for p in procs.scan() if p.pid in pids and p.argv and p.argv[0] == "openvpn"]
    assert all(p.poll() is not None for p in run.procs.values())


def netvpn_mode(topo, agent: str) -> str:
    v = topo.nodes[agent].vpn
    return f"({v.mode}/{v.proto})"


@pytest.mark.root
def test_mtu_overhead_is_real(topo, tmp_path):
    """A full-size inner packet (1500) becomes 1552 bytes of UDP/IP on the underlay and is
    fragmented; a 1501-byte one does not fit the tunnel device at all."""
    with Network(topo) as net:
        up = Capture(net, "home-router", "uplink", f"host {AGENT['agent1']}", tmp_path / "mtu.pcap")
        ok = net.cmd("agent1", f"ping -n -c1 -s 1472 -M do {MEDIA}")
        too_big = net.cmd("agent1", f"ping -n -c1 -s 1473 -M do {MEDIA}")
        small = net.cmd("agent1", f"ping -n -c1 -s 100 {MEDIA}")
        lines = up.lines()
        assert " 0% packet loss" in ok and " 0% packet loss" in small
        assert "mtu=1500" in too_big
        # UDP payload = inner IP packet + 24 bytes (opcode/peer-id 4, packet-id 4, GCM tag 16)
        assert any(f"{CONCENTRATOR}.1194: UDP, length 1524" in l for l in lines), lines
        assert any(f"{CONCENTRATOR}.1194: UDP, length 152" in l for l in lines), lines
        assert any("ip-proto-17" in l for l in lines), "the 1552-byte outer packet is fragmented"


def test_the_model_predicts_what_tunnels_do_to_reachability(topo):
    expected = {(p.src, p.dst): p.expected for p in plan(topo)}
    assert expected[("agent1", "turn")] and expected[("agent3", "intranet")]
    # a full-tunnel client answers through its tunnel: the reply leaves the data centre
    # masqueraded and is not recognised; the split client answers the bypassed hosts
    assert not expected[("turn", "agent1")] and not expected[("turn", "agent3")]
    assert expected[("turn", "agent2")] and not expected[("media", "agent2")]
    assert expected[("agent1", "agent2")]          # the home lan is on-link


def test_configs_say_what_the_model_says(topo, tmp_path):
    d = tmp_path
    agent2 = topo.nodes["agent2"]
    gw = topo.nodes["vpn-gw"]
    client = netvpn.client_config(topo, agent2, d)
    assert f"remote {CONCENTRATOR} 1194" in client and "proto udp" in client
    assert "tcp-client" in netvpn.client_config(topo, topo.nodes["agent3"], d)
    ccd = netvpn.client_ccd(agent2.vpn, gw.tunnels[0], 1)
    assert 'push "redirect-gateway def1"' in ccd
    assert f'push "route {TURN} 255.255.255.255 net_gateway"' in ccd
    assert "ifconfig-push 10.200.0.3 255.255.255.128" in ccd
    server = netvpn.server_config(topo, gw, gw.tunnels[1], d)
    assert "proto tcp-server" in server and "port 443" in server and "server 10.200.0.128 255.255.255.128" in server
    assert "secret" not in server          # TLS mode, never static keys
    assert 'oifname != "vpn*" masquerade' in netvpn.masquerade(gw)


def _fake(tmp_path: Path, script: str) -> netvpn.VpnRun:
    log = tmp_path / "agent1.log"
    fh = open(log, "wb")
    p = subprocess.Popen([sys.executable, "-c", script], stdout=fh, stderr=subprocess.STDOUT)
    fh.close()
    return netvpn.VpnRun(tmp_path, {"agent1": p}, {"agent1": log})


def test_a_tunnel_that_fails_names_the_node_and_its_log(tmp_path):
    run = _fake(tmp_path, "print('TLS Error: TLS handshake failed', flush=True); raise SystemExit(1)")
    with pytest.raises(LabError) as info:
        netvpn.wait_up(run, ["agent1"], 5)
    msg = str(info.value)
    assert "VPN client 'agent1'" in msg and "exited (status 1)" in msg and "TLS handshake failed" in msg


def test_a_tunnel_that_never_comes_up_times_out(tmp_path):
    run = _fake(tmp_path, "import time; print('TCP/UDP: connecting', flush=True); time.sleep(10)")
    t0 = time.monotonic()
    with pytest.raises(LabError) as info:
        netvpn.wait_up(run, ["agent1"], 0.5)
    run.procs["agent1"].kill()
    run.procs["agent1"].wait()
    assert time.monotonic() - t0 < 3
    assert "VPN client 'agent1': the tunnel did not come up within 0.5 s" in str(info.value)
    assert "connecting" in str(info.value)


@pytest.mark.root
def test_a_concentrator_that_fails_stops_the_build_and_leaves_nothing(topo, monkeypatch):
    real = netvpn.server_config
    monkeypatch.setattr(netvpn, "server_config", lambda *a: real(*a) + "no-such-option 1\n")
    with pytest.raises(LabError) as info:
        with Network(topo):
            pass
    msg = str(info.value)
    assert "concentrator 'vpn-gw': OpenVPN exited" in msg and "no-such-option" in msg


@pytest.mark.root
def test_sigkill_then_clean_ends_the_openvpn_processes(repo):
    """OpenVPN outlives a SIGKILLed owner (the node shells do not); `icelab clean` finds it
    by the lab's mark and ends it, and with it the last namespaces and tun devices."""
    from lab.net.state import get
    up = subprocess.Popen([sys.executable, "-m", "lab.cli", "up", str(repo / "topologies/vpn-split.yaml")],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while (st := get("vpnsplit")) is None or st.status != "running":
            assert time.monotonic() < deadline and up.poll() is None, "the lab did not come up"
            time.sleep(0.05)
        ours = [(p.pid, procs.start_time(p.pid)) for p in procs.scan()
                if p.lab == "vpnsplit" and p.argv[:1] == ("openvpn",)]
        assert len(ours) == 2                       # the concentrator's server and agent1's client
        up.kill()
        up.wait()
        r = subprocess.run([sys.executable, "-m", "lab.cli", "clean"], capture_output=True, text=True, timeout=60)
        assert r.returncode == 0 and "cleaned lab 'vpnsplit'" in r.stdout, r.stdout + r.stderr
        deadline = time.monotonic() + 5
        while any(procs.alive(pid, started) for pid, started in ours):
            assert time.monotonic() < deadline, "OpenVPN survived icelab clean"
            time.sleep(0.05)
    finally:
        if up.poll() is None:
            up.kill()
            up.wait()
        subprocess.run([sys.executable, "-m", "lab.cli", "clean"], capture_output=True, timeout=60)


@pytest.mark.root
def test_real_calls_through_the_tunnels_on_the_underlay(tmp_path, monkeypatch):
    """The softphone's own packets (a real call each, not a probe): on the home uplink the
    full-tunnel agents' calls are only OpenVPN's packets to the concentrator, the split
    agent's STUN/TURN and signalling are plain; TURN hears the full tunnels from the data
    centre's address. After the run no OpenVPN process and no tun device is left."""
    from lab.scenario.load import load_scenario
    from lab.scenario.runner import Runner
    extra = [("home-router", "uplink"), ("turn", "eth0")]
    real = Runner._capture_points
    monkeypatch.setattr(Runner, "_capture_points", lambda self: list(dict.fromkeys(real(self) + extra)))
    r = Runner(load_scenario(ROOT / "tests/net/scenarios/vpn-calls.yaml"), out_dir=tmp_path).run()
    assert r.verdict == "pass", [c.to_dict() for c in r.checks]

    def seen(point: str) -> list[str]:
        out = subprocess.run(["tcpdump", "-r", r.pcaps[point], "-n"], capture_output=True, text=True).stdout
        return [l for l in out.splitlines() if " IP " in l]

    underlay, at_turn = seen("home-router:uplink"), seen("turn:eth0")
    a1, a2, a3 = (_involving(underlay, AGENT[a]) for a in ("agent1", "agent2", "agent3"))
    assert len(a1) > 50 and all(f"{CONCENTRATOR}.1194" in l and "UDP" in l for l in a1), a1[:5]
    assert len(a3) > 50 and all(f"{CONCENTRATOR}.443" in l and "UDP" not in l for l in a3), a3[:5]
    assert any(f"IP {AGENT['agent2']}." in l and f"> {TURN}.3478: UDP" in l for l in a2), a2[:5]
    assert any(f"IP {AGENT['agent2']}." in l and f"> {SIGNALLING}.443:" in l for l in a2), a2[:5]
    # TURN: the full tunnels arrive masqueraded to the concentrator, the split agent as itself
    # (the media edge, in the signalling host's process, allocates its own relays too)
    sources = {l.split(" IP ")[1].split(" > ")[0].rsplit(".", 1)[0] for l in at_turn if f"> {TURN}.3478" in l}
    assert sources - {SIGNALLING} == {CONCENTRATOR, AGENT["agent2"]}, sources
    # teardown: no OpenVPN process of this lab, and no tun device in this namespace
    lab = r.lab
    assert not [p for p in procs.scan() if p.lab == lab and p.in_this_run_dir and p.argv and p.argv[0] == "openvpn"]
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    assert not re.search(r"^\d+: vpn\d+[:@]", links, re.M)
    routes = subprocess.run(["ip", "-4", "route"], capture_output=True, text=True).stdout
    assert "10.200." not in routes and " vpn" not in routes
