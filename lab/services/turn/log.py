"""The transaction log: one JSON object per line, one line per STUN/TURN transaction.

Fields: ``t`` (unix time, seconds), ``client`` ("ip:port"), ``transport`` (udp, tcp,
tls), ``method`` (Binding, Allocate, ...), ``outcome`` (success, error, dropped,
discarded), ``code`` (the error code, or null), ``latency_ms`` (receipt to answer,
fault delays included), and for some lines ``user`` and ``relay``.
Lines are buffered and written at most 200 ms late (the log must not slow the relay).
"""

from __future__ import annotations

import json
import time
from typing import IO


class TransactionLog:
    def __init__(self, path: str | None):
        self._f: IO[str] | None = open(path, "a", buffering=1 << 16) if path else None

    def write(self, client: tuple, transport: str, method: str, outcome: str, code: int | None,
              started: float, **extra) -> None:
        if self._f is None:
            return
        rec = {"t": round(time.time(), 3), "client": f"{client[0]}:{client[1]}", "transport": transport,
               "method": method, "outcome": outcome, "code": code,
               "latency_ms": round((time.monotonic() - started) * 1000, 3)}
        rec.update(extra)
        self._f.write(json.dumps(rec) + "\n")

    def flush(self) -> None:
        if self._f is not None:
            self._f.flush()

    def close(self) -> None:
        if self._f is not None:
            self._f.close()
            self._f = None


def read(path: str) -> list[dict]:
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]
