"""The transaction log: one JSON object per line, one line per STUN/TURN transaction.

Fields: ``t`` (unix time, seconds), ``client`` ("ip:port"), ``transport`` (udp, tcp,
tls), ``method`` (Binding, Allocate, ...), ``outcome`` (success, error, dropped,
discarded), ``code`` (the error code, or null), ``latency_ms`` (receipt to answer,
fault delays included), ``user`` once the request was authenticated, and ``reason``
on every error (and on a retransmitted Allocate's success): why, in a few words ("no
credentials" for the first leg, "wrong password", "stale nonce", ...).
Lines are batched and written at most 200 ms late (the log must not slow the relay):
``write`` only keeps a tuple; ``flush`` (the server's sweeper, every 200 ms) formats and
writes them all at once.
"""

from __future__ import annotations

import atexit
import json
import time
from typing import IO


# one %-format per line: much cheaper than json.dumps of a dict (same JSON; numbers keep
# three decimals)
_LINE = ('{"t": %.3f, "client": %s, "transport": "%s", "method": "%s", "outcome": "%s", "code": %s, '
         '"latency_ms": %.3f%s')


class TransactionLog:
    def __init__(self, path: str | None):
        self._f: IO[str] | None = open(path, "a", buffering=1 << 16) if path else None
        self._pending: list[tuple] = []
        self._users: dict[str, str] = {}        # user -> the end of its lines (escaped once)
        self._clients: dict[tuple, str] = {}    # client address -> its JSON string
        if self._f is not None:
            atexit.register(self.close)         # what is pending when the server is stopped

    def write(self, client: tuple, transport: str, method: str, outcome: str, code: int | None,
              started: float, user: str | None = None, reason: str | None = None) -> None:
        if self._f is not None:
            self._pending.append((time.monotonic(), client, transport, method, outcome, code, started, user, reason))

    def flush(self) -> None:
        """Format and write every pending line (times come from the monotonic clock,
        converted to unix time here: one clock read per transaction)."""
        if self._f is None:
            return
        pending, self._pending = self._pending, []
        if pending:
            offset = time.time() - time.monotonic()
            users, clients = self._users, self._clients
            if len(users) > 100000:
                users.clear()
            if len(clients) > 100000:
                clients.clear()
            lines = []
            add = lines.append
            for mono, client, transport, method, outcome, code, started, user, reason in pending:
                c = clients.get(client)
                if c is None:
                    c = clients[client] = json.dumps(f"{client[0]}:{client[1]}")
                if user is None:
                    tail = "}\n"
                else:
                    tail = users.get(user)
                    if tail is None:
                        tail = users[user] = f', "user": {json.dumps(user)}}}\n'
                if reason is not None:
                    tail = f', "reason": {json.dumps(reason)}' + tail
                add(_LINE % (mono + offset, c, transport, method, outcome, "null" if code is None else code,
                             (mono - started) * 1000, tail))
            self._f.write("".join(lines))
        self._f.flush()

    def close(self) -> None:
        if self._f is not None:
            self.flush()
            self._f.close()
            self._f = None


def read(path: str) -> list[dict]:
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]
