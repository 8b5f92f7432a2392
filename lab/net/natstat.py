"""A NAT node's connection-tracking statistics over a run: what the kernel refused, and when.

``/proc/<pid>/net/stat/nf_conntrack`` is the statistics of the network namespace ``pid`` is
in: one row per CPU, hexadecimal. Read from the host, it needs no process in the node. Two
ways a NAT runs out show in it (docs/scale.md):

- its **source-port pool**: a new flow for which masquerade finds no free outside port keeps
  a reply tuple that clashes with a tracked one, so the kernel cannot insert it when the
  packet leaves: ``insert_failed`` and ``drop`` count it;
- its **connection table** (``nf_conntrack_max``, one limit for the host and every
  namespace): a new flow that finds the table full is dropped before it is tracked:
  ``drop`` (and ``early_drop``, when an unconfirmed entry was evicted to make room), with
  no ``insert_failed``.

A sampler thread reads every NAT node's file a few times a second during the timeline and
keeps the samples at which something changed.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

COUNTERS = ("insert_failed", "drop", "early_drop")
INTERVAL = 0.1


def read(pid: int) -> dict[str, int] | None:
    """The namespace's counters summed over CPUs (``entries``: the table's size, the same in
    every row), or None when the node is gone."""
    try:
        lines = Path(f"/proc/{pid}/net/stat/nf_conntrack").read_text().split("\n")
    except OSError:
        return None
    head = lines[0].split()
    out = dict.fromkeys(head, 0)
    rows = [ln.split() for ln in lines[1:] if ln.strip()]
    for row in rows:
        for k, v in zip(head, row):
            out[k] += int(v, 16)
    if rows:
        out["entries"] = int(rows[0][0], 16)
    return out


class NatSampler:
    """Samples each NAT node's counters from ``start()`` to ``stop()``; ``series[node]``
    holds (seconds since ``t0``, counters) for the first sample and each one that changed
    the refusals."""

    def __init__(self, pids: dict[str, int], t0: float, interval: float = INTERVAL):
        self.pids = pids
        self.t0 = t0
        self.interval = interval
        self.series: dict[str, list[tuple[float, dict[str, int]]]] = {n: [] for n in pids}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="natstat")

    def start(self) -> "NatSampler":
        self._sample()
        self._thread.start()
        return self

    def _sample(self) -> None:
        now = time.monotonic() - self.t0
        for node, pid in self.pids.items():
            got = read(pid)
            if got is None:
                continue
            s = self.series[node]
            if not s or any(got.get(k, 0) != s[-1][1].get(k, 0) for k in COUNTERS):
                s.append((round(now, 3), got))

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()

    def stop(self) -> dict[str, list[tuple[float, dict[str, int]]]]:
        self._stop.set()
        self._thread.join(2)
        self._sample()
        return self.series
