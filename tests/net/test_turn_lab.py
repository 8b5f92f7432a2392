"""The `turn` role inside a real lab, for both backends: an aioice TURN client on agent1
allocates on the turn host and relays to a UDP echo on agent2, over UDP, TCP and TLS."""

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lab.model import load_topology
from lab.net import Network
from lab.services.turn.auth import rest_password, rest_username
from lab.net.state import turn_control_path
from lab.services.turn.faults import control

pytestmark = pytest.mark.root
HERE = Path(__file__).resolve().parent.parent / "services"


@pytest.mark.parametrize("backend", ["embedded", "coturn"])
def test_turn_role_relays_in_a_lab(repo, backend):
    topo = load_topology(repo / "topologies/agent-lan.yaml")
    topo.services["turn"]["backend"] = backend
    with Network(topo) as net:
        [turn] = [s for s in net.services if s.service == "turn"]
        assert turn.proc.poll() is None
        if backend == "coturn":
            assert "turnserver" in Path(f"/proc/{turn.proc.pid}/cmdline").read_bytes().decode(errors="replace")
        server = str(topo.address_of("turn"))
        peer_ip = str(topo.address_of("agent2"))
        echo = net.node("agent2").popen([sys.executable, str(HERE.parent / "udp_probe.py"), "reflect", peer_ip, "5000"],
                                        stdout=subprocess.PIPE)
        try:
            assert echo.stdout.readline().strip() == b"ready"
            user = rest_username("agent1", 3600)
            pw = rest_password(turn.config["secret"], user)
            ca = net.state.dir / "pki" / "ca.pem"
            for transport, port in (("udp", 3478), ("tcp", 3478), ("tls", 443)):
                out = net.node("agent1").popen(
                    [sys.executable, str(HERE / "turn_probe.py"), "--server", server, "--port", str(port),
                     "--transport", transport, "--username", user, "--password", pw,
                     "--peer", f"{peer_ip}:5000", "--count", "20", "--ca", str(ca)],
                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={"PYTHONPATH": str(repo)})
                so, se = out.communicate(timeout=30)
                assert out.returncode == 0, se.decode()
                res = json.loads(so)
                assert res["relay"][0] == server, res
                assert res["received"] == 20, (transport, res)
            if backend == "embedded":
                # a fault set live, as a scenario would at a time of its choosing
                control(turn_control_path(topo.name, "turn"), {"faults": {"error": [{"method": "Allocate", "code": 508}]}})
                out = net.node("agent1").popen(
                    [sys.executable, str(HERE / "turn_probe.py"), "--server", server, "--username", user,
                     "--password", pw, "--peer", f"{peer_ip}:5000", "--count", "1"],
                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={"PYTHONPATH": str(repo)})
                so, se = out.communicate(timeout=30)
                assert out.returncode != 0 and b"508" in se, se.decode()[-500:]
        finally:
            echo.kill()
            echo.wait()
        if backend == "embedded":
            time.sleep(0.5)     # the log is written at most 200 ms late
            log = [json.loads(l) for l in (net.state.dir / "turn-turn.transactions.jsonl").read_text().splitlines()]
            assert {"udp", "tcp", "tls"} <= {r["transport"] for r in log}
            assert any(r["method"] == "Allocate" and r["outcome"] == "success" for r in log)
