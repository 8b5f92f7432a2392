"""The embedded TURN server's Python cost per allocation, without sockets: what
bench/turn.py cannot separate from the kernel's and the machine's share.

Run: `PYTHONPATH=$PWD .venv/bin/python bench/turn_profile.py [--profile]`. Feeds
``TurnServer.on_client`` the two requests of an allocation (Allocate without credentials ->
401, then the authenticated Allocate, REST credentials, a fresh user each time) for
``--allocations`` fresh 5-tuples, with the transaction log on (flushed as the sweeper does),
and prints the best per-allocation time over batches of 500 (the minimum is what the code
costs; a loaded machine only adds). ``--profile`` adds cProfile's top functions.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from lab.core import stun  # noqa: E402
from lab.services.turn.auth import rest_password, rest_username  # noqa: E402
from lab.services.turn.config import TurnConfig  # noqa: E402
from lab.services.turn.server import TurnServer  # noqa: E402

RT = (stun.REQUESTED_TRANSPORT, bytes([17, 0, 0, 0]))
BATCH = 500


class Conn:
    transport = "udp"
    local = ("127.0.0.1", 3478)

    def __init__(self, i: int):
        self.client = ("127.0.0.2", 10000 + i % 50000)
        self.key = ("udp", self.client, self.local, i)
        self.out = b""

    def send(self, data: bytes) -> None:
        self.out = data


class Relays:
    """No sockets: the kernel's part is not what this measures."""

    def open(self, ip, port):
        return object()

    def attach(self, sock, alloc):
        pass

    def close(self, sock):
        pass


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--allocations", type=int, default=15000)
    ap.add_argument("--profile", action="store_true")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        srv = TurnServer(TurnConfig(secret="s", min_port=20000, max_port=60000, log=str(Path(d) / "tx.jsonl")),
                         Relays())
        n = args.allocations - args.allocations % BATCH
        conns = [Conn(i) for i in range(n + 1)]
        names = [rest_username(f"bench{i}", 7200) for i in range(n)]
        keys = [stun.long_term_key(u, "icelab", rest_password("s", u)) for u in names]
        first = [stun.encode(stun.ALLOCATE, stun.REQUEST, os.urandom(12), [RT]) for _ in range(n)]
        srv.on_client(first[0], conns[n])
        nonce = stun.parse(conns[n].out).get(stun.NONCE)    # shared by every client within a second
        second = [stun.encode(stun.ALLOCATE, stun.REQUEST, os.urandom(12), [
            RT, (stun.USERNAME, names[i].encode()), (stun.REALM, b"icelab"), (stun.NONCE, nonce)], keys[i])
            for i in range(n)]
        prof = cProfile.Profile() if args.profile else None
        best = float("inf")
        for b in range(0, n, BATCH):
            if prof:
                prof.enable()
            t = time.perf_counter()
            for i in range(b, b + BATCH):
                c = conns[i]
                srv.on_client(first[i], c)
                srv.on_client(second[i], c)
            srv.log.flush()
            best = min(best, time.perf_counter() - t)
            if prof:
                prof.disable()
        last = stun.parse(conns[n - 1].out)
        assert last.cls == stun.SUCCESS, last
        print(f"{n} allocations: best {best / BATCH * 1e6:.1f} us of Python per allocation "
              f"(401 + Allocate + transaction log line x2){' (under cProfile)' if prof else ''}")
        if prof:
            pstats.Stats(prof).sort_stats("tottime").print_stats(20)


if __name__ == "__main__":
    main()
