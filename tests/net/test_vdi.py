"""A virtual desktop's display channel for real: audio frames over TCP to thin clients.

tests/topologies/vdi-home.yaml: thin1 reaches the desktop over the routed network, thin2
through a full-tunnel OpenVPN; the capture runs on the home router's uplink.
"""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import pytest

from lab.model import load_topology
from lab.core.errors import LabError
from lab.net import Network, procs
from lab.net import vdi as netvdi

ROOT = Path(__file__).resolve().parents[2]
DESKTOP = "10.20.0.2"


@pytest.fixture(scope="module")
def topo():
    return load_topology(ROOT / "tests/topologies/vdi-home.yaml")


@pytest.mark.root
def test_the_desktop_audio_reaches_thin_clients_over_the_display_channel(topo, tmp_path):
    with Network(topo) as net:
        server = net.vdi["desktop"]
        pcap = tmp_path / "uplink.pcap"
        cap = net.node("home-router").popen(["tcpdump", "-i", "uplink", "-n", "-U", "--immediate-mode",
                                             "-w", str(pcap), "ip"], stdout=subprocess.DEVNULL,
                                            stderr=subprocess.PIPE)
        seen = ""
        while "listening on" not in seen:
            line = cap.stderr.readline().decode()
            assert line, seen
            seen += line
        stats = {c: netvdi.display_channel(net, c, 1.0) for c in ("thin1", "thin2")}
        time.sleep(0.2)
        cap.send_signal(signal.SIGINT)
        cap.wait(timeout=5)
        lines = subprocess.run(["tcpdump", "-r", str(pcap), "-n"], capture_output=True, text=True).stdout.splitlines()
        for c, s in stats.items():
            # one frame every 20 ms for a second (the first frame leaves when the client connects)
            assert 45 <= s.frames <= 56, s
            assert 0 < s.delay_ms_mean < 50 and s.jitter_ms >= 0, s
        print("\ndisplay channel: " + "; ".join(
            f"{c} mean {s.delay_ms_mean:.3f} ms, p95 {s.delay_ms_p95:.3f} ms, jitter {s.jitter_ms:.3f} ms"
            for c, s in stats.items()))
        # thin1's display stream crosses the underlay in the clear (TCP 1494); thin2's is in the tunnel
        assert any(f"IP {DESKTOP}.1494 > 192.168.1.2." in l for l in lines)
        thin2 = [l for l in lines if "192.168.1.3" in l]
        assert thin2 and all("192.0.2.2.1194" in l for l in thin2)
    assert server.poll() is not None
    assert not [p for p in procs.scan() if p.pid == server.pid]


@pytest.mark.root
def test_mouth_to_ear_network_share_of_each_mode(topo):
    with Network(topo) as net:
        m = netvdi.mouth_to_ear(net, "thin1", 0.5)
    print(f"\nthin1 mouth-to-ear, network share: redirected {m.redirected:.3f} ms, "
          f"in the desktop {m.in_desktop:.3f} ms (display channel {m.display.delay_ms_mean:.3f} ms)")
    assert m.redirected > 0 and m.in_desktop > m.display.delay_ms_mean > 0


@pytest.mark.root
def test_a_desktop_that_does_not_start_stops_the_build(topo, monkeypatch):
    monkeypatch.setattr(netvdi, "START_TIMEOUT", 0.5)
    # a server that cannot start, whatever the environment (an installed lab package included)
    monkeypatch.setattr(netvdi, "SERVER_MODULE", "lab.net.no_such_display_server")
    with pytest.raises(LabError) as info:
        with Network(topo):
            pass
    assert "virtual desktop 'desktop': the display server did not start" in str(info.value)
    assert "No module named" in str(info.value)


THIN, DESK, TURN, SIGNALLING = "192.168.1.2", "192.0.2.2", "203.0.113.2", "203.0.113.3"


@pytest.mark.root
def test_vdi_modes_on_the_wire(tmp_path, monkeypatch):
    """Redirected: ICE and media leave from the thin client, its signalling from the desktop
    (the plug-in's virtual channel rides the display protocol). In the desktop: media from
    the data centre. Captures on the home uplink, at TURN and at signalling say so."""
    from lab.scenario.load import load_scenario
    from lab.scenario.runner import Runner
    extra = [("home-router", "eth1"), ("turn", "eth0"), ("signalling", "eth0")]
    real = Runner._capture_points
    monkeypatch.setattr(Runner, "_capture_points", lambda self: list(dict.fromkeys(real(self) + extra)))
    r = Runner(load_scenario(ROOT / "tests/net/scenarios/vdi-modes.yaml"), out_dir=tmp_path).run()
    assert r.verdict == "pass", [c.to_dict() for c in r.checks]
    o = r.observations

    def seen(point: str) -> list[str]:
        out = subprocess.run(["tcpdump", "-r", r.pcaps[point], "-n"], capture_output=True, text=True)
        return out.stdout.splitlines()

    uplink, at_turn, at_sig = seen("home-router:eth1"), seen("turn:eth0"), seen("signalling:eth0")
    assert o["call:redir"]["vdi"]["engine_on"] == "thin1" and o["call:desk"]["vdi"]["engine_on"] == "desktop"
    # the thin client: display protocol to the desktop and (redirected) STUN/TURN, never signalling
    assert any(f"{THIN}." in l and f"> {DESK}.1494:" in l for l in uplink)
    assert any(f"IP {THIN}." in l and f"> {TURN}.3478: UDP" in l for l in uplink)
    assert not [l for l in uplink if f"{SIGNALLING}.443" in l]
    # TURN hears both engines: the thin client's (redirected) and the desktop's
    assert any(f"IP {THIN}." in l for l in at_turn) and any(f"IP {DESK}." in l for l in at_turn)
    # every signalling connection comes from the desktop, in both modes
    to_sig = [l for l in at_sig if f"> {SIGNALLING}.443:" in l]
    assert to_sig and all(l.split(" IP ")[1].startswith(f"{DESK}.") for l in to_sig), to_sig[:5]
    # the mouth-to-ear estimate for both modes, with the display channel in the desktop's
    m = o["call:desk"]["vdi"]["mouth_to_ear"]
    assert m["in-desktop"]["total_ms"] > m["redirected"]["total_ms"] >= netvdi.SOFTPHONE_SHARE_MS
    assert m["in-desktop"]["display_ms"] >= netvdi.DISPLAY_FRAME_MS
