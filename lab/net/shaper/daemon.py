"""The lab's shaper: one process per lab that holds packets of impaired links in NFQUEUE.

Run as ``python -m lab.net.shaper.daemon LAB`` inside one of the lab's namespaces (the
lab's cleanup ends it with everything else there) with ``ICELAB_LAB`` set. It opens one
nfnetlink socket in each namespace where a link direction is held, adds the iptables
rules that queue that direction's packets, and answers requests on the unix socket
``/run/icelab/<lab>/shaper.sock`` (the lab's control channel, lab/core/control.py; the
messages are in ``messages.py``): ``set`` a link's settings (the link is attached on first
use), ``show`` every attached direction, ``ping``, ``trace``.

Where a direction is held: at the egress (iptables mangle POSTROUTING) of the node that
sends on the link; when that node is a lan, at its bridge port (br_netfilter in the lan's
namespace, iptables physdev). The packet is on the wire of that link only, and the
receiving node sees it when the link delivers it.

Timing (docs/impairments.md, "Timing: where the time goes"): a packet's delay counts from
when it came, estimated from the read lag measured at start (``calibrate.py``: NFQUEUE gives
no time at POSTROUTING); due packets are released before new ones are read; the last
``early`` before a release is waited awake, within a CPU budget.
"""

from __future__ import annotations

import ctypes
import gc
import json
import os
import select
import signal
import socket
import subprocess
import sys
import time
from collections import deque

from lab.core.control import Channel, listen_unix
from lab.core.errors import LabError
from lab.core.names import mac_address, run_dir
from lab.model.impairment import Impairment
from lab.net.shaper import calibrate
from lab.net.shaper.messages import Ping, SetLink, Show, Trace
from lab.net.shaper.engine import Direction, Scheduler
from lab.net.shaper.nfqueue import NF_ACCEPT, NF_DROP, NFQueueSocket
from lab.net.state import get

MARK = 0x1CE1                    # duplicates we send ourselves carry it and are not queued again
CLONE_NEWNET = 0x40000000
PR_SET_TIMERSLACK = 29
SOCKET_NAME = "shaper.sock"
IPTABLES = "iptables-legacy"     # nftables' 'queue' is not in every kernel; xt NFQUEUE is
SPIN_SHARE = 0.1                 # of one core at most, spent waiting awake for releases
SPIN_BURST = 0.01                # seconds of waiting awake saved up while idle
SPIN_HELD = 64                   # more held packets: releases come often, the loop is awake anyway
TRACE = 10000                    # packets kept by ICELAB_SHAPER_TRACE=1 for {"op": "trace"}

_libc = ctypes.CDLL(None, use_errno=True)


def socket_path(lab: str):
    return run_dir() / lab / SOCKET_NAME


def placement(topology: dict, link: dict, direction: str) -> tuple[str, str, str]:
    """(node, hook, ifname) where ``direction`` of ``link`` is held: always on the sending
    side, so that the receiver (its captures, its receive timestamps) sees the packet when
    the link delivers it. A lan sends through its bridge port ('bridge': the bridge's
    netfilter call in the lan's own namespace, matched by physdev)."""
    src = "a" if direction == "a2b" else "b"
    kinds = {n: spec["kind"] for n, spec in topology["nodes"].items()}
    hook = "bridge" if kinds[link[src]["node"]] == "lan" else "egress"
    return link[src]["node"], hook, link[src]["ifname"]


def queue_number(link_index: int, direction: str) -> int:
    return 2 * link_index + (0 if direction == "a2b" else 1)


def iptables_rule(hook: str, ifname: str, queue: int) -> list[str]:
    if hook == "egress":
        return ["-t", "mangle", "POSTROUTING", "-o", ifname, "-m", "mark", "!", "--mark", hex(MARK),
                "-j", "NFQUEUE", "--queue-num", str(queue)]
    return ["-t", "mangle", "POSTROUTING", "-m", "physdev", "--physdev-out", ifname,
            "-j", "NFQUEUE", "--queue-num", str(queue)]


class Namespace:
    """Sockets of one lab namespace, created there with setns(2)."""

    def __init__(self, pid: int, home: int):
        self.pid = pid
        self._home = home
        fd = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY)
        try:
            self._enter(fd)
            try:
                self.nfq = NFQueueSocket()
                self.raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
                self.raw.setsockopt(socket.SOL_SOCKET, socket.SO_MARK, MARK)
                self.raw.setblocking(False)
                self.packet = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(0x0800))
            finally:
                self._enter(home)
        finally:
            os.close(fd)

    @staticmethod
    def _enter(fd: int) -> None:
        if _libc.setns(fd, CLONE_NEWNET) != 0:
            e = ctypes.get_errno()
            raise OSError(e, f"setns: {os.strerror(e)}")

    def bridge_netfilter(self) -> None:
        """Bridged IPv4 packets of this (lan) namespace pass iptables: the setting is the
        namespace's own; the host's is not touched."""
        r = subprocess.run(["nsenter", "-t", str(self.pid), "-n", "sysctl", "-qw", "net.bridge.bridge-nf-call-iptables=1"],
                           capture_output=True, text=True, timeout=10)
        if r.returncode != 0:
            raise LabError(f"shaper: bridge netfilter in a lan (namespace of pid {self.pid}) could not be "
                           f"turned on: {r.stderr.strip()}")

    def iptables(self, action: str, rule: list[str]) -> None:
        table, chain, rest = rule[0:2], rule[2], rule[3:]
        r = subprocess.run(["nsenter", "-t", str(self.pid), "-n", IPTABLES, "-w", *table, action, chain, *rest],
                           capture_output=True, text=True, timeout=10)
        if r.returncode != 0:
            raise LabError(f"shaper: {IPTABLES} {action} {' '.join(rule)} failed: {r.stderr.strip()}")


class Held:
    """A direction attached to the kernel: its engine and where its packets wait."""

    def __init__(self, link: int, direction: str, ns: Namespace, node: str, hook: str, ifname: str, queue: int):
        self.link, self.direction, self.ns = link, direction, ns
        self.node, self.hook, self.ifname, self.queue = node, hook, ifname, queue
        self.engine = Direction(Impairment())
        self.copy = 1
        self.queued = False              # the iptables rule that queues this direction is in

    def describe(self) -> str:
        return f"{self.node} {self.hook} {self.ifname}" + ("" if self.queued else " (not queued: nothing to do)")


class Shaper:
    def __init__(self, lab: str):
        self.lab = lab
        st = get(lab)
        if st is None or not st.topology:
            raise SystemExit(f"shaper: no state for lab '{lab}'")
        self.topology = st.topology
        self.pids = {n: s.pid for n, s in st.nodes.items()}
        self._home = os.open("/proc/self/ns/net", os.O_RDONLY)
        self.namespaces: dict[str, Namespace] = {}
        self.by_queue: dict[tuple[int, int], Held] = {}      # (socket fd, queue) -> direction
        self.dirs: dict[tuple[int, str], Held] = {}
        self.sched = Scheduler()
        self.draining = False            # a direction left with nothing to do still holds packets
        self.calibration = calibrate.Calibration()
        # per packet (queue, read, estimated arrival, release, released, UDP payload's first
        # 12 bytes): for measuring the shaper itself (docs/impairments.md); the first 40
        # bytes of each packet are then copied to us
        self.trace = deque(maxlen=TRACE) if os.environ.get("ICELAB_SHAPER_TRACE") else None
        self.channel = Channel.by_op({"ping": (Ping, self.ping), "trace": (Trace, self.get_trace),
                                      "set": (SetLink, self.set_link), "show": (Show, self.show)})
        self.control = listen_unix(socket_path(lab))

    # -- attaching ------------------------------------------------------------------

    def namespace(self, node: str) -> Namespace:
        ns = self.namespaces.get(node)
        if ns is None:
            ns = self.namespaces[node] = Namespace(self.pids[node], self._home)
        return ns

    def attach(self, link: int, direction: str) -> Held:
        d = self.dirs.get((link, direction))
        if d is not None:
            return d
        spec = self.topology["links"][link]
        node, hook, ifname = placement(self.topology, spec, direction)
        ns = self.namespace(node)
        q = queue_number(link, direction)
        ns.nfq.bind(q, copy_range=1)             # bind before the rule: never a queue without reader
        d = Held(link, direction, ns, node, hook, ifname, q)
        self.by_queue[(ns.nfq.fileno(), q)] = d
        self.dirs[(link, direction)] = d
        return d

    def set(self, link: int, direction: str, settings: Impairment) -> None:
        d = self.attach(link, direction)
        want_copy = 65535 if settings.duplicate else (40 if self.trace is not None else 1)
        if want_copy != d.copy:
            d.ns.nfq.set_copy(d.queue, want_copy)
            d.copy = want_copy
        d.engine.change(settings, self.sched.held_by(d))
        self.sched.rebuild()
        if not settings.is_zero and not d.queued:
            if d.hook == "bridge":
                d.ns.bridge_netfilter()
            d.ns.iptables("-A", iptables_rule(d.hook, d.ifname, d.queue))
            d.queued = True
        self.unqueue_idle()

    def unqueue_idle(self) -> None:
        """Directions with nothing to do and nothing held leave the queue: packets then
        pass at the kernel's speed (a trip through any userspace costs 0.1 to 0.3 ms on a
        VM). The few packets already on their way to us are let through at once."""
        self.draining = False
        for d in self.dirs.values():
            if d.queued and d.engine.passthrough:
                if d.engine.held:
                    self.draining = True          # again once the held packets are gone
                    continue
                d.ns.iptables("-D", iptables_rule(d.hook, d.ifname, d.queue))
                d.queued = False

    # -- the loop -------------------------------------------------------------------

    def run(self) -> None:
        try:
            _libc.prctl(PR_SET_TIMERSLACK, 1, 0, 0, 0)     # wake up on time, not 50 us late
        except Exception:
            pass
        try:
            # real-time priority: a release is not delayed by the lab's other processes
            # (it spins only the last ``early`` before a release, within SPIN_SHARE)
            os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(10))
        except (OSError, AttributeError):
            pass
        # measured at real-time priority, as the loop below runs
        self.calibration = calibrate.measure(IPTABLES)
        print(f"shaper calibration: {json.dumps(self.calibration.to_dict())}", file=sys.stderr, flush=True)
        lag, early = self.calibration.read_lag, self.calibration.early
        gc.freeze()                      # the lab's objects are not garbage: collections skip them
        monotonic = time.monotonic
        sched = self.sched
        tokens, last = SPIN_BURST, monotonic()
        wakes: deque[float] = deque(maxlen=calibrate.WAKES)    # how late timers fired, lately
        looked = monotonic()             # when the sockets were last looked at (see below)
        while True:
            watch = [self.control, *(ns.nfq for ns in self.namespaces.values())]
            nxt = sched.next_release()
            now = monotonic()
            tokens = min(SPIN_BURST, tokens + (now - last) * SPIN_SHARE)
            last = now
            spin = nxt is not None and tokens > 0 and len(sched.heap) <= SPIN_HELD
            # wake a little early and wait the rest awake: a timer fires tens to hundreds
            # of microseconds late on a VM, a spinning loop does not (calibrate.py)
            timeout = None if nxt is None else max(0.0, nxt - now - (early if spin else 0.0))
            # every packet read below came after the previous look at the sockets: each
            # socket was then empty, or was drained after it
            after, looked = looked, now
            ready = select.select(watch, [], [], timeout)[0]
            wake = monotonic()
            if not ready:
                if timeout:
                    wakes.append(wake - now - timeout)
                    if len(wakes) == wakes.maxlen:
                        early = self.calibration.adapt(list(wakes))
                        wakes.clear()
                if spin:
                    # the last microseconds before a release, awake (counted against the
                    # budget, also when the release was too close to sleep at all); a packet
                    # coming meanwhile is seen at once
                    began = wake
                    while wake < nxt:
                        after, looked = looked, wake
                        ready = select.select(watch, [], [], 0)[0]
                        wake = monotonic()
                        if ready:
                            break
                    tokens -= wake - began
            # releases first: they are due now, while arrivals only need their time noted
            t = monotonic()
            if nxt is not None and nxt <= t:
                self.release(t)
            # a packet came when the kernel queued it, about ``lag`` before the loop woke
            # for it (NFQUEUE does not say when: calibrate.py), and not before ``after``
            arrived = max(wake - lag, after)
            for s in ready:
                if s is self.control:
                    self.serve()
                    # packets that came while the kernel answered a configuration request
                    # were kept aside: no readable socket would announce them
                    for ns in self.namespaces.values():
                        if ns.nfq.has_pending():
                            self.receive(ns.nfq, wake)
                    continue
                self.receive(s, arrived)
            if ready:
                self.release(monotonic())
            if self.draining:
                self.unqueue_idle()

    def receive(self, s: NFQueueSocket, arrived: float) -> None:
        """Every packet waiting on ``s``: its fate, and its release time when it is kept."""
        fd = s.fileno()
        trace, sched = self.trace, self.sched
        for queue, pid, size, payload in s.read():
            d = self.by_queue.get((fd, queue))
            if d is None:                       # not ours (cannot happen): let it pass
                s.verdict(queue, pid, NF_ACCEPT)
                continue
            e = d.engine
            if e.passthrough and not e.held:
                # a direction with nothing to do, and nothing ahead of this packet
                s.verdict(queue, pid, NF_ACCEPT)
                e.counters.received += 1
                e.counters.sent += 1
                continue
            h = e.arrive(arrived, pid, size)
            if h is None:
                s.verdict(queue, pid, NF_DROP)
                continue
            if trace is not None:
                h.trace = [d.queue, time.monotonic(), arrived, h.release, 0.0, payload[28:40] if payload else b""]
                trace.append(h.trace)
            if payload is not None and len(payload) == size and e.wants_duplicate():
                h.duplicate = payload
            e.held += 1
            sched.push(d, h)
        s.flush()

    def release(self, now: float) -> None:
        """Accept every packet due by ``now`` (one datagram of verdicts per namespace), then
        send the copies of those to be duplicated."""
        copies = []
        trace = self.trace
        for d, h in self.sched.due(now):
            d.ns.nfq.verdict(d.queue, h.packet_id, NF_ACCEPT)
            d.engine.held -= 1
            c = d.engine.counters
            c.sent += 1
            late = now - h.release
            c.late_sum += late
            if late > c.late_max:
                c.late_max = late
            if trace is not None and getattr(h, "trace", None):
                h.trace[4] = now
            if h.duplicate is not None:
                copies.append((d, h.duplicate))
        for ns in self.namespaces.values():
            ns.nfq.flush()
        for d, packet in copies:            # after the originals: a copy follows its original
            self.send_copy(d, packet)

    def send_copy(self, d: Held, packet: bytes) -> None:
        """The duplicate leaves right after the original, through the same interface
        (egress) or into the receiving node's own stack (ingress)."""
        dst = socket.inet_ntoa(packet[16:20])
        try:
            if d.hook == "egress":
                d.ns.raw.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, d.ifname.encode())
                d.ns.raw.sendto(packet, (dst, 0))
            else:
                # out of the bridge port straight to the node behind it (packet sockets
                # bypass netfilter, so the copy is not queued again)
                d.ns.packet.sendto(packet, (d.ifname, 0x0800, 0, 0, self.peer_mac(d)))
            d.engine.counters.duplicated += 1
        except OSError:
            pass

    def peer_mac(self, d: Held) -> bytes:
        """The MAC of the interface at the other end of a lan port (the lab derives it)."""
        spec = self.topology["links"][d.link]
        far = spec["b"] if d.direction == "a2b" else spec["a"]
        return bytes.fromhex(mac_address(self.lab, far["node"], far["ifname"]).replace(":", ""))

    # -- control ----------------------------------------------------------------------

    def serve(self) -> None:
        """One request on the control socket (answered, whatever it is: lab/core/control.py)."""
        self.channel.serve_one(self.control)

    def ping(self, req: Ping) -> dict:
        return {"pid": os.getpid(), "calibration": self.calibration.to_dict()}

    def get_trace(self, req: Trace) -> dict:
        if self.trace is None:
            return {"ok": False, "error": "start the shaper with ICELAB_SHAPER_TRACE=1 to trace"}
        out = [[q, r, a, rel, done, p.hex()] for q, r, a, rel, done, p in self.trace]
        self.trace.clear()
        return {"trace": out}

    def set_link(self, req: SetLink) -> dict:
        if req.link >= len(self.topology["links"]):
            return {"ok": False, "error": f"no link {req.link}"}
        for direction in ("a2b", "b2a"):
            wire = getattr(req, direction)
            if wire is not None:
                self.set(req.link, direction, wire.impairment())
        return {"at": time.monotonic()}

    def show(self, req: Show) -> dict:
        out: dict = {}
        for (link, direction), d in sorted(self.dirs.items()):
            out.setdefault(str(link), {})[direction] = {
                "settings": d.engine.settings.to_wire(), "counters": d.engine.counters.to_dict(),
                "held": len(self.sched.held_by(d)), "where": d.describe()}
        return {"links": out}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    lab = argv[0]
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    shaper = Shaper(lab)
    print(f"shaper for lab '{lab}' ready (pid {os.getpid()})", file=sys.stderr, flush=True)
    shaper.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
