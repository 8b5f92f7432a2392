"""VDI in a running lab: each virtual desktop serves its display channel (lab/net/display.py).

The desktop's display server starts with the lab (after the VPN tunnels, so thin clients
behind a VPN reach it through their tunnel) in the vdi node's namespace, started with the
node's ``popen`` so that it carries the lab's mark and ends with the lab. A thin client
measures the channel on demand with :func:`display_channel`.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from lab.core import supervise
from lab.core.errors import LabError
from lab.model.topology import Topology

ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT = 10.0
#: the display server's module (run with ``python -m``)
SERVER_MODULE = "lab.net.display"


def configured(topo: Topology) -> bool:
    return any(n.vdi is not None for n in topo.nodes.values())


def _python_env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    return env


def start(network) -> dict[str, subprocess.Popen]:
    """Start the display server of every desktop that has thin clients; wait until each
    listens. Raises LabError naming the desktop and what it printed."""
    topo: Topology = network.topo
    ports = {n.vdi.desktop: n.vdi.port for n in topo.nodes.values() if n.vdi is not None}
    procs = {}
    for desktop, port in sorted(ports.items()):
        procs[desktop] = supervise.start(
            [sys.executable, "-m", SERVER_MODULE, "serve", str(port)], name=desktop, popen=network.nodes[desktop].popen,
            cwd=str(ROOT), env=_python_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    network.vdi = servers = {desktop: p.proc for desktop, p in procs.items()}
    said = {p.pid: supervise.LineWatch(p.proc.stdout, "listening on") for p in procs.values()}

    def failed(p: supervise.Process) -> str:
        said[p.pid]()             # what a server that ended printed before it did
        return (f"virtual desktop '{p.name}': the display server did not start within "
                f"{START_TIMEOUT:g} s: {said[p.pid].rest().strip() or 'no output'}")
    supervise.wait_ready(procs.values(), lambda p: said[p.pid](), START_TIMEOUT, exited=failed, not_ready=failed)
    return servers


@dataclass
class DisplayStats:
    """The desktop's audio as the thin client receives it over the display channel."""

    client: str
    desktop: str
    frames: int
    delay_ms_mean: float
    delay_ms_p95: float
    delay_ms_max: float
    jitter_ms: float
    connect_ms: float

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def display_channel(network, client: str, seconds: float = 1.0) -> DisplayStats:
    """Connect ``client`` (a thin client) to its desktop and measure ``seconds`` of audio."""
    vdi = network.topo.nodes[client].vdi
    proc = network.nodes[client].popen(
        [sys.executable, "-m", "lab.net.display", "listen", str(vdi.address), str(vdi.port), str(seconds)],
        cwd=str(ROOT), env=_python_env(), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = proc.communicate(timeout=seconds + 15)
    if proc.returncode != 0:
        raise LabError(f"thin client '{client}': the display channel to '{vdi.desktop}' "
                       f"({vdi.address}:{vdi.port}) failed: {err.decode(errors='replace').strip()[-500:]}")
    d = json.loads(out)
    return DisplayStats(client, vdi.desktop, d["frames"], d["delay_ms_mean"], d["delay_ms_p95"],
                        d["delay_ms_max"], d["jitter_ms"], d["connect_ms"])


def _rtt_ms(network, src: str, dst, count: int = 10) -> float:
    out = network.cmd(src, f"ping -n -q -c {count} -i 0.02 -W 1 {dst}")
    m = re.search(r"= [\d.]+/([\d.]+)/", out)
    if m is None:
        raise LabError(f"'{src}' cannot ping {dst}: {out.strip()[-200:]}")
    return float(m.group(1))


@dataclass
class MouthToEar:
    """The network's share of mouth-to-ear delay for each place the softphone can run,
    in ms, one way: the media path (to TURN and on to the media edge, half the RTTs),
    plus the display channel when the softphone runs in the desktop. The softphone's own
    share (20 ms frames, jitter buffer, devices) comes on top, the same in both modes."""

    redirected: float          # media redirection: the RTC engine runs on the thin client
    in_desktop: float          # the softphone in the desktop: media from the data centre + display
    display: DisplayStats

    def to_dict(self) -> dict:
        return {"redirected_ms": round(self.redirected, 3), "in_desktop_ms": round(self.in_desktop, 3),
                "display": self.display.to_dict()}


def mouth_to_ear(network, client: str, seconds: float = 1.0) -> MouthToEar:
    """Measure both modes' network delay for thin client ``client`` (pings and the
    display channel; the lab's TURN and media hosts are found by their services)."""
    topo: Topology = network.topo
    turn = next(n for n in topo.nodes.values() if "turn" in n.services)
    media = next(n for n in topo.nodes.values() if "media" in n.services)
    desktop = topo.nodes[client].vdi.desktop
    relay_leg = _rtt_ms(network, turn.name, topo.address_of(media.name)) / 2
    local = _rtt_ms(network, client, topo.address_of(turn.name)) / 2 + relay_leg
    remote = _rtt_ms(network, desktop, topo.address_of(turn.name)) / 2 + relay_leg
    display = display_channel(network, client, seconds)
    return MouthToEar(local, remote + display.delay_ms_mean, display)


# The softphone's own share of mouth-to-ear delay, the same wherever its engine runs. Nominal
# values (the lab does not measure audio devices): Opus frames of 20 ms (the offer's ptime),
# a jitter buffer holding about two frames, capture and playout buffers of 10 ms each.
PACKETIZATION_MS = 20.0
JITTER_BUFFER_MS = 40.0
DEVICES_MS = 20.0
SOFTPHONE_SHARE_MS = PACKETIZATION_MS + JITTER_BUFFER_MS + DEVICES_MS
#: the display protocol packs the desktop's sound in frames too (lab/net/display.py)
DISPLAY_FRAME_MS = 20.0


def estimate(m: MouthToEar) -> dict:
    """Mouth-to-ear, one way, for both places the RTC engine can run: the network's share
    (measured) plus the softphone's (nominal), and for the softphone in the desktop the
    display channel's delay plus its audio frame."""
    display = m.display.delay_ms_mean + DISPLAY_FRAME_MS
    media_remote = m.in_desktop - m.display.delay_ms_mean
    return {
        "redirected": {"network_ms": round(m.redirected, 3), "softphone_ms": SOFTPHONE_SHARE_MS,
                       "total_ms": round(m.redirected + SOFTPHONE_SHARE_MS, 3)},
        "in-desktop": {"network_ms": round(media_remote, 3), "display_ms": round(display, 3),
                       "softphone_ms": SOFTPHONE_SHARE_MS,
                       "total_ms": round(media_remote + display + SOFTPHONE_SHARE_MS, 3)},
        "display": m.display.to_dict(),
    }


def call_observation(network, client: str, mode: str, engine: str) -> dict:
    """What a scenario's report says about a call from thin client ``client`` in VDI ``mode``
    (lab/agent/vdi.py): where the engine and the signalling ran, and the mouth-to-ear estimate
    of both modes, measured in the running lab after the call."""
    desktop = network.topo.nodes[client].vdi.desktop
    obs = {"mode": mode, "thin_client": client, "desktop": desktop, "engine_on": engine,
           "signalling_from": desktop}
    try:
        obs["mouth_to_ear"] = estimate(mouth_to_ear(network, client, 1.0))
    except (LabError, StopIteration, subprocess.TimeoutExpired) as exc:
        obs["mouth_to_ear"] = {"error": str(exc) or "no turn or media host in the lab"}
    return obs
