"""What the shaper measures about this machine when it starts, to release packets on time.

Two latencies of a virtual machine dominate the shaper's error (docs/impairments.md, "Timing"):

- **Hearing of a packet.** The kernel queues a packet (NFQUEUE) and wakes the shaper, which
  reads it some 0.1 to 0.3 ms later: mostly the wake-up of a sleeping process on an idle
  vCPU. NFQUEUE would tell the packet's own time (``NFQA_TIMESTAMP``) only when ``skb->tstamp``
  is set, which it never is at POSTROUTING of a locally sent or forwarded packet (checked on
  this kernel: the attribute is absent), so the shaper cannot read when a packet came. It
  estimates it instead: the arrival is the read time minus the median of this lag, measured
  here on the same path (a packet sent by another process, queued at POSTROUTING, read by
  the sleeping shaper).
- **Waking up for a release.** A timer (``select`` timeout) fires late by tens to hundreds of
  microseconds; the loop therefore wakes ``early`` before a release and waits the rest
  awake. ``early`` covers the 95th percentile of the lateness measured here.

The measurement takes about 0.2 s, in the shaper's own namespace (a lab node's), on its
loopback interface: one iptables rule for one UDP port, removed at once. When it cannot run
(loopback down, iptables refused) the shaper keeps the defaults and says so in its log and
in ``ping``.
"""

from __future__ import annotations

import fcntl
import os
import select
import socket
import statistics
import struct
import subprocess
import time
from dataclasses import dataclass

from lab.core.errors import LabError
from lab.net.shaper.nfqueue import NFQueueSocket

SIOCGIFFLAGS = 0x8913
QUEUE = 65535                    # links use 2 * index + direction: never this one
DEFAULT_EARLY = 0.0002
MIN_EARLY, MAX_EARLY = 0.0001, 0.001
SAMPLES = 40
WAKES = 50                       # timer wake-ups between two adjustments of ``early``
GAP = 0.003                      # between calibration packets: the shaper falls asleep meanwhile
_STAMP = struct.Struct("!d")


@dataclass
class Calibration:
    read_lag: float = 0.0        # seconds: median from queueing to the shaper reading the packet
    read_lag_p10: float = 0.0
    read_lag_p90: float = 0.0
    timer_late: float = 0.0      # seconds: 95th percentile of a select timeout's lateness
    early: float = DEFAULT_EARLY
    samples: int = 0
    adjusted: int = 0            # times ``early`` followed the live timer lateness
    error: str = ""              # why nothing was measured

    def adapt(self, lateness: list[float]) -> float:
        """``early`` from how late the loop's own timers fired lately: the VM's load
        changes while a lab runs (other labs, a build), so the measurement goes on."""
        self.timer_late = _quantile(lateness, 0.95)
        self.early = _early(self.timer_late)
        self.adjusted += 1
        return self.early

    def to_dict(self) -> dict:
        us = lambda x: round(x * 1e6, 1)                                    # noqa: E731
        return {"read_lag_us": us(self.read_lag), "read_lag_p10_us": us(self.read_lag_p10),
                "read_lag_p90_us": us(self.read_lag_p90), "timer_late_us": us(self.timer_late),
                "early_us": us(self.early), "samples": self.samples, "adjusted": self.adjusted, "error": self.error}


def _quantile(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def _early(timer_late: float) -> float:
    return min(MAX_EARLY, max(MIN_EARLY, timer_late + 0.00005))


def timer_lateness(n: int = 20, wait: float = 0.001) -> list[float]:
    """How late ``select`` returns after its timeout, ``n`` times."""
    out = []
    for _ in range(n):
        t0 = time.monotonic()
        select.select([], [], [], wait)
        out.append(time.monotonic() - t0 - wait)
    return out


def _loopback_up() -> bool:
    """Is ``lo`` up in this process's namespace? (Asked of the kernel: /sys shows the
    namespace that mounted it, not ours.)"""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            flags = struct.unpack_from("H", fcntl.ioctl(s, SIOCGIFFLAGS, struct.pack("16sH14x", b"lo", 0)), 16)[0]
        return bool(flags & 1)                                              # IFF_UP
    except OSError:
        return False


def _iptables(action: str, port: int, iptables: str) -> None:
    r = subprocess.run([iptables, "-w", "-t", "mangle", action, "POSTROUTING", "-o", "lo", "-p", "udp",
                        "--dport", str(port), "-j", "NFQUEUE", "--queue-num", str(QUEUE)],
                       capture_output=True, text=True, timeout=10)
    if r.returncode != 0:
        raise LabError(f"{iptables} {action} (the calibration's queue rule) failed: {r.stderr.strip()}")


def _send_stamped(port: int, count: int, gap: float) -> None:
    """In a child process: ``count`` datagrams, each carrying its CLOCK_MONOTONIC send time.
    An ordinary process (SCHED_OTHER), as the lab's applications are."""
    try:
        os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))
    except (OSError, AttributeError):
        pass
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    for _ in range(count):
        time.sleep(gap)
        s.sendto(_STAMP.pack(time.monotonic()), ("127.0.0.1", port))
    s.close()


def read_lags(iptables: str, count: int = SAMPLES, gap: float = GAP) -> list[float]:
    """Seconds from a packet's send to the shaper waking up for it (``select`` returns),
    ``count`` times, the shaper sleeping meanwhile as it does between packets."""
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)   # the packets' destination: never read
    sink.bind(("127.0.0.1", 0))
    port = sink.getsockname()[1]
    nfq = NFQueueSocket(rcvbuf=1 << 20)
    lags: list[float] = []
    try:
        nfq.bind(QUEUE, copy_range=20 + 8 + _STAMP.size)
        _iptables("-A", port, iptables)
        try:
            pid = os.fork()
            if pid == 0:                                        # pragma: no cover (child)
                try:
                    _send_stamped(port, count, gap)
                finally:
                    os._exit(0)
            try:
                deadline = time.monotonic() + count * gap + 2.0
                while len(lags) < count and time.monotonic() < deadline:
                    if not select.select([nfq], [], [], 0.5)[0]:
                        continue
                    now = time.monotonic()             # the shaper's loop notes this time too
                    for queue, packet_id, _size, payload in nfq.read():
                        nfq.verdict(queue, packet_id, 1)
                        if payload is not None and len(payload) >= 28 + _STAMP.size:
                            lags.append(now - _STAMP.unpack_from(payload, 28)[0])
                    nfq.flush()
            finally:
                os.waitpid(pid, 0)
        finally:
            _iptables("-D", port, iptables)
        nfq.unbind(QUEUE)
    finally:
        nfq.close()
        sink.close()
    return lags


def measure(iptables: str) -> Calibration:
    """The shaper's calibration; the defaults (no lag, ``DEFAULT_EARLY``) when it cannot run."""
    c = Calibration()
    late = timer_lateness()
    c.timer_late = _quantile(late, 0.95)
    c.early = _early(c.timer_late)
    if not _loopback_up():
        c.error = "loopback is down in the shaper's namespace: no read-lag measurement"
        return c
    try:
        lags = read_lags(iptables)
    except (OSError, LabError, subprocess.SubprocessError) as exc:
        c.error = f"read-lag measurement failed: {exc}"
        return c
    # the first packets wake a process that was just busy: not the steady state
    lags = lags[2:]
    if len(lags) < 10:
        c.error = f"read-lag measurement: only {len(lags)} packets came back"
        return c
    c.samples = len(lags)
    c.read_lag = statistics.median(lags)
    c.read_lag_p10, c.read_lag_p90 = _quantile(lags, 0.1), _quantile(lags, 0.9)
    return c
