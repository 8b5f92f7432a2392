"""Packet captures on lab interfaces: tcpdump inside the node's namespace, one pcap each.

A capture on an interface sees what arrives before the node's firewall decides (AF_PACKET
taps ingress ahead of netfilter) and what leaves after it. So "arrived on the inside
interface, never left by the outside one" places a drop in that node, and captures along a
path show the hop where packets died. Files open in Wireshark.
"""

from __future__ import annotations

import signal
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from lab.core.supervise import LineWatch, Process, wait_ready

# --immediate-mode: without it packets wait in the kernel ring until a block is full or a
# second passes, and a tcpdump stopped before that loses them.
#: enough for IP/UDP/TCP headers and a STUN/TURN header with its first attributes
SNAPLEN = 512


@dataclass
class Capture:
    node: str
    interface: str
    path: Path
    proc: subprocess.Popen | None = None
    stats: str = ""
    said: LineWatch | None = field(default=None, repr=False)     # tcpdump's stderr, until it listens

    @property
    def label(self) -> str:
        return f"{self.node}:{self.interface}"


@dataclass
class Captures:
    directory: Path
    captures: dict[tuple[str, str], Capture] = field(default_factory=dict)

    def start(self, network, points: list[tuple[str, str]], timeout: float = 5.0) -> None:
        """Start tcpdump on every (node, interface); return once all of them listen."""
        self.directory.mkdir(parents=True, exist_ok=True)
        for node, itf in points:
            if (node, itf) in self.captures:
                continue
            path = self.directory / f"{node}-{itf}.pcap"
            proc = network.node(node).popen(
                ["tcpdump", "-i", itf, "-w", str(path), "-U", "--immediate-mode", "-n", "-s", str(SNAPLEN), "-Z", "root",
                 "-q", "not arp"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            self.captures[(node, itf)] = Capture(node, itf, path, proc)
        # tcpdump says "listening on ..." once its socket is bound: from then on nothing is missed
        waiting = {c.label: c for c in self.captures.values() if c.said is None}
        for c in waiting.values():
            c.said = LineWatch(c.proc.stderr, "listening on")

        def failed(p: Process) -> str:
            said = waiting[p.name].said
            said()
            return f"capture on {p.name} did not start: {said.rest().strip() or 'timeout'}"
        wait_ready([Process(c.proc, label) for label, c in waiting.items()], lambda p: waiting[p.name].said(),
                   timeout, exited=failed, not_ready=failed)

    def stop(self) -> None:
        """Stop every tcpdump (it flushes on SIGTERM) and keep its closing statistics."""
        for c in self.captures.values():
            if c.proc and c.proc.poll() is None:
                c.proc.send_signal(signal.SIGTERM)
        for c in self.captures.values():
            if c.proc is None:
                continue
            try:
                _, err = c.proc.communicate(timeout=3)
                c.stats = " ".join(err.decode().split())
            except subprocess.TimeoutExpired:
                c.proc.kill()
                c.proc.communicate()
            c.proc = None

    def files(self) -> dict[str, Path]:
        return {c.label: c.path for c in self.captures.values() if c.path.exists()}
