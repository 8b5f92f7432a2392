"""Allocations per second and relayed packets per second: the embedded TURN server and
coturn side by side, on loopback, with the same client (this script), in one run.

Run: `PYTHONPATH=$PWD .venv/bin/python bench/turn.py` (no root needed; loopback only).
Prints a Markdown table for docs/benchmarks.md. Targets (issue #5): allocation rate at
least coturn's; relayed packets per second at least half of coturn's.

Fairness: both servers run at once, from the same TurnConfig (coturn's turnserver.conf is
rendered by lab.services.turn.coturn, as in a lab), both with their logs on (our
transaction log; coturn's log file), both pinned to the same CPU (``--server-cpu``) and
this client to the other one (``--client-cpu``). coturn keeps its threads (a listener, an
authentication thread and, by default, one relay thread per CPU it counts) but they all
share the one CPU; ``--coturn-relay-threads 0`` runs its relay in the listener thread. The
rounds alternate which server goes first, so a load that comes and goes on this shared
machine hits both alike; every figure is a median over ``--runs`` rounds with its min and
max, and the ratio of each round (taken seconds apart) is given as well. Server CPU time
per allocation (from /proc) does not depend on how loaded the machine is.

Allocations: ``--allocations`` fresh UDP 5-tuples per round, each 401 then an authenticated
Allocate (REST credentials), 64 in flight. Relayed packets: 4 allocations with a channel
each; the client sends 100-byte ChannelData as fast as it can for ``--seconds``, counted at
the peer (client -> relay -> peer).

Options: ``--runs`` rounds (7), ``--allocations`` per round (3,000), ``--seconds`` of
relaying per round (3), ``--coturn-relay-threads N``, ``--workers N`` (the embedded
server's processes, all on the server CPU), ``--no-pin``.

The soak (1,000 allocations held with refreshes for 10 minutes, none lost) is a by-hand
run: `PYTHONPATH=$PWD .venv/bin/python bench/turn.py --soak 600 --allocations 1000`
(``--refresh`` interval, 60 s; ``--lifetime``, the server's allocation lifetime, 120 s;
``--backend coturn`` soaks coturn instead). See docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import select
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "tests" / "services"), str(ROOT / "tests")]   # turnlab and its support module

from lab.core import stun  # noqa: E402
from lab.services.turn import coturn  # noqa: E402
from lab.services.turn.auth import rest_password, rest_username  # noqa: E402
from lab.services.turn.config import TurnConfig  # noqa: E402
from lab.services.turn.faults import control  # noqa: E402
from turnlab import free_port, wait_listening  # noqa: E402

SECRET = "test-secret"
REQ_TRANSPORT = (stun.REQUESTED_TRANSPORT, bytes([17, 0, 0, 0]))
TICK = os.sysconf("SC_CLK_TCK")
RELAY_RANGES = {"embedded": (40000, 52499), "coturn": (52500, 64999)}


class Server:
    """One server process on loopback, pinned to ``cpus`` from its first instruction (the
    affinity is inherited by coturn's threads and survives exec)."""

    def __init__(self, backend: str, tmp: Path, cpus: set[int] | None, relay_threads: int | None = None,
                 **over):
        self.backend = backend
        lo, hi = RELAY_RANGES[backend]
        p = free_port()
        self.cfg = TurnConfig(backend=backend, addresses=["127.0.0.1"], udp_port=p, tcp_port=p, tls_port=None,
                              secret=SECRET, realm="icelab", allow_loopback=True, min_port=lo, max_port=hi,
                              log=str(tmp / "transactions.jsonl") if backend == "embedded" else None,
                              control=str(tmp / "control.sock") if backend == "embedded" else None)
        for k, v in over.items():
            setattr(self.cfg, k, v)
        if backend == "embedded":
            conf = tmp / "turn.json"
            self.cfg.save(conf)
            argv = [sys.executable, "-m", "lab.services.turn", "--config", str(conf)]
        else:
            conf = tmp / "turnserver.conf"
            text = coturn.render(self.cfg, tmp)
            if relay_threads is not None:
                text += f"relay-threads={relay_threads}\n"
            conf.write_text(text)
            argv = coturn.command(conf)
        self.logfile = tmp / "server.log"
        self._out = open(self.logfile, "wb")
        pin = (lambda: os.sched_setaffinity(0, cpus)) if cpus else None
        self.proc = subprocess.Popen(argv, stdout=self._out, stderr=subprocess.STDOUT, cwd=ROOT, preexec_fn=pin,
                                     env=dict(os.environ, PYTHONPATH=str(ROOT)))
        wait_listening(self.cfg, self.proc, self.logfile)
        self.addr = ("127.0.0.1", self.cfg.udp_port)

    def _pids(self) -> list[int]:
        pids = [self.proc.pid]
        for task in Path(f"/proc/{self.proc.pid}/task").iterdir():
            pids += [int(p) for p in (task / "children").read_text().split()]
        return pids

    def cpu(self) -> float:
        """User + system seconds of the whole process (every thread) and of its worker
        processes (``--workers``)."""
        total = 0
        for pid in self._pids():
            f = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(f[11]) + int(f[12])
        return total / TICK

    def status(self) -> dict[str, str]:
        lines = Path(f"/proc/{self.proc.pid}/status").read_text().splitlines()
        return {k: v.strip() for k, _, v in (ln.partition(":") for ln in lines)}

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._out.close()


class Alloc:
    """One client 5-tuple going through 401 -> Allocate, non-blocking."""

    def __init__(self, srv, local_ip="127.0.0.1"):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((local_ip, 0))
        self.sock.setblocking(False)
        self.sock.connect(srv)
        self.name = rest_username(f"bench{id(self)}", 7200)
        self.key = stun.long_term_key(self.name, "icelab", rest_password(SECRET, self.name))
        self.nonce = None
        self.relay = None

    def start(self):
        self.sock.send(stun.encode(stun.ALLOCATE, stun.REQUEST, os.urandom(12), [REQ_TRANSPORT]))

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
            return True
        return False

    def transact(self, method, attrs, timeout=2.0) -> stun.Message | None:
        """One blocking authenticated request; again with the new nonce after a 438."""
        self.sock.setblocking(True)
        self.sock.settimeout(timeout)
        try:
            for _ in range(2):
                self.authed(method, attrs)
                try:
                    m = stun.parse(self.sock.recv(1000))
                except (socket.timeout, ConnectionError):
                    return None
                if m.cls == stun.ERROR and stun.parse_error_code(m.get(stun.ERROR_CODE)) == 438:
                    self.nonce = m.get(stun.NONCE)
                    continue
                return m
            return m
        finally:
            self.sock.setblocking(False)


_round = 0


def allocate_many(srv, n: int, window: int = 64) -> tuple[list[Alloc], float]:
    ep = select.epoll()
    by_fd = {}
    # every round from its own loopback address: a 5-tuple of an earlier round that the
    # server still holds (coturn keeps deleted allocations a moment) never meets 437
    global _round
    _round += 1
    local = f"127.0.{1 + _round // 250}.{1 + _round % 250}"
    pending = [Alloc(srv, local) for _ in range(n)]
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
    took = time.monotonic() - t0
    ep.close()
    return done, took


def release(allocs: list[Alloc]) -> None:
    """Refresh with LIFETIME 0, so that the next round's sockets, which may get the same
    ports, do not meet 437."""
    for a in allocs:
        a.transact(stun.REFRESH, [(stun.LIFETIME, stun.u32(0))], timeout=1)
        a.sock.close()


def bind_channels(allocs: list[Alloc], peer: tuple[str, int], strict: bool = True) -> int:
    """ChannelBind (or refresh it: the same number to the same peer) on every allocation;
    how many succeeded."""
    ok = 0
    for i, a in enumerate(allocs):
        m = a.transact(stun.CHANNEL_BIND, [(stun.CHANNEL_NUMBER, struct.pack("!HH", 0x4000 + i % 0x1000, 0)),
                                           (stun.XOR_PEER_ADDRESS, stun.xor_address(peer, b""))])
        if m is None or m.cls != stun.SUCCESS:
            if strict:
                raise RuntimeError("ChannelBind failed")
        else:
            ok += 1
    return ok


def relay_pps(srv, seconds: float, flows: int = 4, size: int = 100) -> float:
    """Client -> relay -> peer: ChannelData in, UDP out; counted at the peer."""
    allocs, _ = allocate_many(srv, flows)
    peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    peer.bind(("127.0.0.1", 0))
    peer.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
    peer.setblocking(False)
    bind_channels(allocs, peer.getsockname())
    frames = [(a.sock.send, stun.channel_data(0x4000 + i, b"x" * size)) for i, a in enumerate(allocs)]
    got = 0
    recv = peer.recv
    t0 = time.monotonic()
    end = t0 + seconds
    while time.monotonic() < end:
        for _ in range(32):
            for send, f in frames:
                try:
                    send(f)
                except BlockingIOError:
                    pass
        while True:
            try:
                recv(2048)
                got += 1
            except BlockingIOError:
                break
    t_end = time.monotonic() + 0.3
    while time.monotonic() < t_end:
        try:
            recv(2048)
            got += 1
        except BlockingIOError:
            time.sleep(0.01)
    release(allocs)
    peer.close()
    return got / seconds


def spread(xs: list[float], fmt: str = "{:,.0f}") -> str:
    return f"{fmt.format(statistics.median(xs))} ({fmt.format(min(xs))}-{fmt.format(max(xs))})"


def compare(args) -> None:
    cpus = None if args.no_pin else {args.server_cpu}
    if not args.no_pin:
        os.sched_setaffinity(0, {args.client_cpu})
    with tempfile.TemporaryDirectory() as d:
        servers = {}
        try:
            for b in ("embedded", "coturn"):
                (Path(d) / b).mkdir()
                over = {"workers": args.workers} if b == "embedded" and args.workers > 1 else {}
                servers[b] = Server(b, Path(d) / b, cpus,
                                    relay_threads=args.coturn_relay_threads if b == "coturn" else None, **over)
            threads = {b: s.status().get("Threads") for b, s in servers.items()}
            res = {b: {"rate": [], "cpu": [], "client": [], "pps": [], "pcpu": [], "busy": []} for b in servers}
            for s in servers.values():        # warm-up, not counted: first sockets, first ports, caches
                release(allocate_many(s.addr, args.allocations // 2)[0])
                relay_pps(s.addr, 0.5)
            for r in range(args.runs):
                order = ["embedded", "coturn"] if r % 2 == 0 else ["coturn", "embedded"]
                for b in order:
                    s = servers[b]
                    c0, t0 = s.cpu(), os.times()
                    allocs, took = allocate_many(s.addr, args.allocations)
                    c1, t1 = s.cpu(), os.times()
                    res[b]["busy"].append((c1 - c0) / took * 100)
                    res[b]["rate"].append(args.allocations / took)
                    res[b]["cpu"].append((c1 - c0) / args.allocations * 1e6)
                    res[b]["client"].append((t1.user + t1.system - t0.user - t0.system) / took * 100)
                    release(allocs)
                for b in order:
                    c0 = servers[b].cpu()
                    pps = relay_pps(servers[b].addr, args.seconds)
                    res[b]["pps"].append(pps)
                    res[b]["pcpu"].append((servers[b].cpu() - c0) / (pps * args.seconds) * 1e6)
                e, c = res["embedded"], res["coturn"]
                print(f"round {r + 1}: allocations/s {e['rate'][-1]:,.0f} vs {c['rate'][-1]:,.0f} "
                      f"({e['rate'][-1] / c['rate'][-1]:.2f}); relayed pps {e['pps'][-1]:,.0f} vs "
                      f"{c['pps'][-1]:,.0f} ({e['pps'][-1] / c['pps'][-1]:.2f})", flush=True)
        finally:
            for s in servers.values():
                s.stop()
    e, c = res["embedded"], res["coturn"]
    ratio = {k: [x / y for x, y in zip(e[k], c[k])] for k in ("rate", "pps")}
    med = statistics.median
    pin = "unpinned" if args.no_pin else f"servers on CPU {args.server_cpu}, client on CPU {args.client_cpu}"
    rt = "default" if args.coturn_relay_threads is None else str(args.coturn_relay_threads)
    print(f"\nMachine: {platform.platform()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
          f"load average {os.getloadavg()[0]:.1f}; {time.strftime('%Y-%m-%d %H:%M')} UTC")
    print(f"{args.runs} rounds, {args.allocations} allocations and {args.seconds:.0f} s of relaying per round "
          f"and server; {pin}; coturn relay-threads {rt} ({threads['coturn']} threads), embedded "
          f"{args.workers} process(es) of {threads['embedded']} thread(s). Median (min-max).\n")
    print("| | embedded | coturn | ratio of medians | ratio per round |\n|---|---|---|---|---|")
    print(f"| allocations/s | {spread(e['rate'])} | {spread(c['rate'])} | {med(e['rate']) / med(c['rate']):.2f} "
          f"| {spread(ratio['rate'], '{:.2f}')} |")
    print(f"| relayed packets/s | {spread(e['pps'])} | {spread(c['pps'])} | {med(e['pps']) / med(c['pps']):.2f} "
          f"| {spread(ratio['pps'], '{:.2f}')} |")
    print(f"| server CPU per allocation (us) | {spread(e['cpu'])} | {spread(c['cpu'])} | "
          f"{med(e['cpu']) / med(c['cpu']):.2f} | |")
    print(f"| allocations per second of server CPU | {spread([1e6 / x for x in e['cpu']])} | "
          f"{spread([1e6 / x for x in c['cpu']])} | {med(c['cpu']) / med(e['cpu']):.2f} | |")
    print(f"| server CPU per relayed packet (us) | {spread(e['pcpu'], '{:.1f}')} | {spread(c['pcpu'], '{:.1f}')} | "
          f"{med(e['pcpu']) / med(c['pcpu']):.2f} | |")
    print(f"| server CPU used while allocating (% of its core) | {spread(e['busy'])} | {spread(c['busy'])} | | |")
    print(f"| client CPU while allocating (% of a core) | {spread(e['client'])} | {spread(c['client'])} | | |")


def soak(args) -> None:
    """``--allocations`` allocations, each with a channel to one peer, refreshed every
    ``--refresh`` s for ``--soak`` s with a lifetime of ``--lifetime`` s (so a refresh lost
    twice loses the allocation). Every round refreshes each allocation (Refresh) and its
    channel (ChannelBind again, as aioice does; channels and their permission last 600 s),
    relays one packet per allocation to the peer, and reads the server's own count."""
    with tempfile.TemporaryDirectory() as d:
        s = Server(args.backend, Path(d), None, default_lifetime=args.lifetime, max_lifetime=args.lifetime,
                   min_port=40000, max_port=64999)
        try:
            peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            peer.bind(("127.0.0.1", 0))
            peer.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
            peer.settimeout(0.5)
            rss0 = s.status()["VmRSS"]
            cpu0 = s.cpu()
            allocs, took = allocate_many(s.addr, args.allocations)
            bind_channels(allocs, peer.getsockname())
            n = len(allocs)
            print(f"{n} allocations in {took:.2f} s (+ a channel each); lifetime {args.lifetime} s, "
                  f"refreshed every {args.refresh:.0f} s for {args.soak:.0f} s; server RSS {rss0} before, "
                  f"{s.status()['VmRSS']} after", flush=True)
            t0 = time.monotonic()
            worst = {"refreshed": n, "channels": n, "relayed": n, "held": n if s.cfg.control else None}
            while (left := args.soak - (time.monotonic() - t0)) > 0:
                time.sleep(min(args.refresh, left))
                r0 = time.monotonic()
                got = {"refreshed": sum(1 for a in allocs if (m := a.transact(stun.REFRESH, [])) is not None
                                        and m.cls == stun.SUCCESS),
                       "channels": bind_channels(allocs, peer.getsockname(), strict=False)}
                took = time.monotonic() - r0
                for i, a in enumerate(allocs):
                    a.sock.send(stun.channel_data(0x4000 + i % 0x1000, b"soak"))
                got["relayed"] = 0
                try:
                    while got["relayed"] < n:
                        peer.recv(100)
                        got["relayed"] += 1
                except socket.timeout:
                    pass
                # coturn has no control socket: its own count is not known here
                got["held"] = control(s.cfg.control, {"status": True})["allocations"] if s.cfg.control else None
                worst = {k: v if v is None else min(v, got[k]) for k, v in worst.items()}
                st = s.status()
                print(f"t={time.monotonic() - t0:.0f} s: refreshed {got['refreshed']}/{n} and channels "
                      f"{got['channels']}/{n} in {took:.2f} s, relayed {got['relayed']}/{n}, server holds "
                      f"{got['held']}; RSS {st['VmRSS']} (peak {st['VmHWM']}), CPU {s.cpu() - cpu0:.1f} s so far",
                      flush=True)
            wall = time.monotonic() - t0
            lost = n - min(v for v in worst.values() if v is not None)
            print(f"\nresult: {'none lost' if not lost else f'LOST {lost}'} (worst round: {worst}); "
                  f"server CPU {s.cpu() - cpu0:.1f} s over {wall:.0f} s ({(s.cpu() - cpu0) / wall * 100:.2f} % "
                  f"of a core); peak RSS {s.status()['VmHWM']}")
            release(allocs)
        finally:
            s.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--allocations", type=int, default=3000)
    ap.add_argument("--seconds", type=float, default=3.0, help="relay measurement time per round")
    ap.add_argument("--runs", type=int, default=7, help="rounds (each measures both servers)")
    ap.add_argument("--server-cpu", type=int, default=1)
    ap.add_argument("--client-cpu", type=int, default=0)
    ap.add_argument("--no-pin", action="store_true", help="let the scheduler place everything")
    ap.add_argument("--coturn-relay-threads", type=int, default=None,
                    help="coturn's relay-threads (default: coturn's own choice; 0: in the listener thread)")
    ap.add_argument("--workers", type=int, default=1,
                    help="the embedded server's worker processes (SO_REUSEPORT), all on the server CPU")
    ap.add_argument("--soak", type=float, default=0, help="soak for this many seconds instead")
    ap.add_argument("--refresh", type=float, default=60.0, help="soak: refresh interval")
    ap.add_argument("--lifetime", type=int, default=120, help="soak: the server's allocation lifetime")
    ap.add_argument("--backend", choices=["embedded", "coturn"], default="embedded", help="soak: which server")
    args = ap.parse_args()
    if args.soak:
        soak(args)
    else:
        compare(args)


if __name__ == "__main__":
    main()
