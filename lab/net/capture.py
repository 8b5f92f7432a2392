"""Packet captures on lab interfaces: tcpdump inside the node's namespace, one pcap each.

A capture on an interface sees what arrives before the node's firewall decides (AF_PACKET
taps ingress ahead of netfilter) and what leaves after it. So "arrived on the inside
interface, never left by the outside one" places a drop in that node, and captures along a
path show the hop where packets died. Files open in Wireshark.
"""

from __future__ import annotations

import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

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
        deadline = time.monotonic() + timeout
        for c in self.captures.values():
            # tcpdump says "listening on ..." once its socket is bound: from then on nothing is missed
            line = b""
            while b"listening on" not in line:
                if c.proc.poll() is not None or time.monotonic() > deadline:
                    err = (line + c.proc.stderr.read() if c.proc.poll() is not None else line).decode().strip()
                    raise RuntimeError(f"capture on {c.label} did not start: {err or 'timeout'}")
                line = c.proc.stderr.readline()

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
