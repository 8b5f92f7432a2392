"""Allocations per second and relayed packets per second: the embedded TURN server and
coturn side by side, on loopback, with the same client (this script).

Run: `PYTHONPATH=$PWD .venv/bin/python bench/turn.py` (no root needed; loopback only).
Prints a Markdown table for docs/benchmarks.md. Targets (issue #5): allocation rate at
least coturn's; relayed packets per second at least half of coturn's.

The soak (1,000 allocations held with refreshes for 10 minutes, none lost) is a by-hand
run: `PYTHONPATH=$PWD .venv/bin/python bench/turn.py --soak 600 --allocations 1000`.
"""

from __future__ import annotations

import argparse
import os
import platform
import select
import socket
import struct
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "services"))

from lab.services.turn import stun  # noqa: E402
from lab.services.turn.auth import rest_password, rest_username  # noqa: E402
from turnlab import server  # noqa: E402

REQ_TRANSPORT = (stun.REQUESTED_TRANSPORT, bytes([17, 0, 0, 0]))


class Alloc:
    """One client 5-tuple going through 401 -> Allocate, non-blocking."""

    def __init__(self, srv, secret, local_ip="127.0.0.1"):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((local_ip, 0))
        self.sock.setblocking(False)
        self.sock.connect(srv)
        self.name = rest_username(f"bench{id(self)}", 7200)
        self.key = stun.long_term_key(self.name, "icelab", rest_password(secret, self.name))
        self.state = "new"
        self.nonce = None
        self.relay = None

    def start(self):
        self.sock.send(stun.encode(stun.ALLOCATE, stun.REQUEST, os.urandom(12), [REQ_TRANSPORT]))
        self.state = "challenged"

    def authed(self, method, attrs):
        self.sock.send(stun.encode(method, stun.REQUEST, os.urandom(12), attrs + [
            (stun.USERNAME, self.name.encode()), (stun.REALM, b"icelab"), (stun.NONCE, self.nonce)], self.key))

    def on(self, data) -> bool:
        """True when the allocation is made."""
        msg = stun.parse(data)
        if msg.cls == stun.ERROR:
            code = stun.parse_error_code(msg.get(stun.ERROR_CODE))
            if code in (401, 438):
                self.nonce = msg.get(stun.NONCE)
                self.authed(stun.ALLOCATE, [REQ_TRANSPORT])
                return False
            raise RuntimeError(f"allocate failed: {code}")
        if msg.method == stun.ALLOCATE:
            self.relay = stun.parse_xor_address(msg.get(stun.XOR_RELAYED_ADDRESS), msg.tid)
            self.state = "allocated"
            return True
        return False


_round = 0


def allocate_many(srv, secret, n: int, window: int = 64) -> tuple[list[Alloc], float]:
    ep = select.epoll()
    by_fd = {}
    # every round from its own loopback address: a 5-tuple of an earlier round that the
    # server still holds (coturn keeps deleted allocations a moment) never meets 437
    global _round
    _round += 1
    local = f"127.0.{1 + _round // 250}.{1 + _round % 250}"
    pending = [Alloc(srv, secret, local) for _ in range(n)]
    done: list[Alloc] = []
    inflight = 0
    t0 = time.monotonic()
    it = iter(pending)
    while len(done) < n:
        while inflight < window:
            a = next(it, None)
            if a is None:
                break
            by_fd[a.sock.fileno()] = a
            ep.register(a.sock.fileno(), select.EPOLLIN)
            a.start()
            inflight += 1
        events = ep.poll(5)
        if not events:
            raise RuntimeError(f"stalled after {len(done)} allocations")
        for fd, _ in events:
            a = by_fd[fd]
            if a.on(a.sock.recv(65536)):
                done.append(a)
                inflight -= 1
                ep.unregister(fd)
    return done, time.monotonic() - t0


def release(allocs: list[Alloc]) -> None:
    """Refresh with LIFETIME 0 (again with the new nonce after a 438), so that the next
    round's sockets, which may get the same ports, do not meet 437."""
    for a in allocs:
        a.sock.setblocking(True)
        a.sock.settimeout(1)
        for _ in range(2):
            a.authed(stun.REFRESH, [(stun.LIFETIME, stun.u32(0))])
            try:
                m = stun.parse(a.sock.recv(1000))
            except (socket.timeout, ConnectionError):
                break
            if m.cls == stun.ERROR and stun.parse_error_code(m.get(stun.ERROR_CODE)) == 438:
                a.nonce = m.get(stun.NONCE)
                continue
            break
        a.sock.close()


def relay_pps(srv, secret, seconds: float, flows: int = 4, size: int = 100) -> float:
    """Client -> relay -> peer: ChannelData in, UDP out; counted at the peer."""
    allocs, _ = allocate_many(srv, secret, flows)
    peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    peer.bind(("127.0.0.1", 0))
    peer.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
    peer.setblocking(False)
    for i, a in enumerate(allocs):
        a.sock.setblocking(True)
        a.authed(stun.CHANNEL_BIND, [(stun.CHANNEL_NUMBER, struct.pack("!HH", 0x4000 + i, 0)),
                                     (stun.XOR_PEER_ADDRESS, stun.xor_address(peer.getsockname(), b""))])
        a.sock.settimeout(2)
        assert stun.parse(a.sock.recv(1000)).cls == stun.SUCCESS
        a.sock.setblocking(False)
    frames = [stun.channel_data(0x4000 + i, b"x" * size) for i in range(flows)]
    got = 0
    t0 = time.monotonic()
    end = t0 + seconds
    sent = 0
    while time.monotonic() < end:
        for _ in range(32):
            for a, f in zip(allocs, frames):
                try:
                    a.sock.send(f)
                    sent += 1
                except BlockingIOError:
                    pass
        while True:
            try:
                peer.recv(2048)
                got += 1
            except BlockingIOError:
                break
    t_end = time.monotonic() + 0.3
    while time.monotonic() < t_end:
        try:
            peer.recv(2048)
            got += 1
        except BlockingIOError:
            time.sleep(0.01)
    release(allocs)
    peer.close()
    return got / seconds


def soak(srv, secret, n: int, seconds: float) -> None:
    allocs, took = allocate_many(srv, secret, n)
    print(f"{n} allocations in {took:.2f} s; refreshing every 60 s for {seconds:.0f} s")
    t0 = time.monotonic()
    while time.monotonic() - t0 < seconds:
        time.sleep(min(60, seconds - (time.monotonic() - t0)))
        lost = 0
        for a in allocs:
            a.sock.setblocking(True)
            a.sock.settimeout(2)
            a.authed(stun.REFRESH, [])
            try:
                m = stun.parse(a.sock.recv(1000))
                if m.cls == stun.ERROR and stun.parse_error_code(m.get(stun.ERROR_CODE)) == 438:
                    a.nonce = m.get(stun.NONCE)
                    a.authed(stun.REFRESH, [])
                    m = stun.parse(a.sock.recv(1000))
                lost += m.cls != stun.SUCCESS
            except socket.timeout:
                lost += 1
        print(f"t={time.monotonic() - t0:.0f} s: {n - lost}/{n} allocations alive")
    release(allocs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--allocations", type=int, default=2000)
    ap.add_argument("--seconds", type=float, default=5.0, help="relay measurement time")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--soak", type=float, default=0, help="soak for this many seconds instead")
    ap.add_argument("--backend", choices=["embedded", "coturn", "both"], default="both")
    ap.add_argument("--workers", type=int, default=1, help="embedded server's worker processes")
    args = ap.parse_args()
    backends = ["embedded", "coturn"] if args.backend == "both" else [args.backend]
    rows = {}
    for backend in backends:
        extra = {"workers": args.workers} if backend == "embedded" else {}
        with tempfile.TemporaryDirectory() as d, server(Path(d), backend=backend, allow_loopback=True,
                                                        min_port=20000, max_port=60000, log=None, **extra) as s:
            if args.soak:
                soak(s.udp, "test-secret", args.allocations, args.soak)
                continue
            rates, pps = [], []
            for _ in range(args.runs):
                allocs, took = allocate_many(s.udp, "test-secret", args.allocations)
                rates.append(args.allocations / took)
                release(allocs)
                pps.append(relay_pps(s.udp, "test-secret", args.seconds))
            rows[backend] = (sorted(rates)[len(rates) // 2], sorted(pps)[len(pps) // 2])
            print(f"{backend}: {rows[backend][0]:.0f} allocations/s, {rows[backend][1]:.0f} relayed packets/s",
                  flush=True)
    if len(rows) == 2:
        e, c = rows["embedded"], rows["coturn"]
        print(f"\nMachine: {platform.platform()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
              f"{time.strftime('%Y-%m-%d')}\n")
        print("| server | allocations/s | relayed packets/s |\n|---|---|---|")
        print(f"| embedded (lab.services.turn) | {e[0]:.0f} | {e[1]:.0f} |")
        print(f"| coturn 4.6 | {c[0]:.0f} | {c[1]:.0f} |")
        print(f"| ratio embedded/coturn | {e[0] / c[0]:.2f} | {e[1] / c[1]:.2f} |")


if __name__ == "__main__":
    main()
