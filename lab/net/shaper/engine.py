"""The delay line of one link direction: what happens to each packet, and when.

Pure logic with an injected clock and random source, so it is tested without a kernel.
Per packet, in the order netem uses: loss (random or Gilbert-Elliott), duplication,
rate limit (a FIFO serialising packets at ``rate``, at most ``queue`` of them waiting;
more are tail-dropped), then the one-way delay plus jitter. Packets leave in the order
they came unless ``reorder`` lets some skip the delay: a later packet never overtakes an
earlier one because of jitter (it waits for it, as on a real link; netem would reorder).
"""

from __future__ import annotations

import heapq
import math
import random
from collections import deque
from dataclasses import dataclass, field

from lab.model.impairment import ETHERNET_OVERHEAD, Impairment

_SQRT3 = math.sqrt(3.0)
_PARETO_ALPHA = 5.0                 # heavy tail, yet a standard deviation that samples reach
_PARETO_MEAN = _PARETO_ALPHA / (_PARETO_ALPHA - 1)
_PARETO_SD = math.sqrt(_PARETO_ALPHA / ((_PARETO_ALPHA - 1) ** 2 * (_PARETO_ALPHA - 2)))
_PN_SD = math.sqrt(0.25 ** 2 + 0.75 ** 2)


def standard_sample(rng: random.Random, distribution: str) -> float:
    """A sample with mean 0 and standard deviation 1 from the named distribution."""
    if distribution == "normal":
        return rng.gauss(0.0, 1.0)
    if distribution == "uniform":
        return rng.uniform(-_SQRT3, _SQRT3)
    pareto = (rng.paretovariate(_PARETO_ALPHA) - _PARETO_MEAN) / _PARETO_SD
    if distribution == "pareto":
        return pareto
    return (0.25 * rng.gauss(0.0, 1.0) + 0.75 * pareto) / _PN_SD       # paretonormal, as netem


@dataclass
class Counters:
    received: int = 0
    sent: int = 0
    lost: int = 0           # random or bursty loss
    overflow: int = 0       # tail-dropped: the rate limit's queue was full
    duplicated: int = 0
    reordered: int = 0
    late_sum: float = 0.0   # how late packets left, summed (timer accuracy)
    late_max: float = 0.0

    def to_dict(self) -> dict:
        d = dict(self.__dict__)
        d["late_mean_us"] = round(d.pop("late_sum") / self.sent * 1e6, 1) if self.sent else 0.0
        d["late_max_us"] = round(d.pop("late_max") * 1e6, 1)
        return d


@dataclass(order=True)
class Held:
    """A packet waiting in the kernel for its verdict."""

    release: float
    seq: int
    packet_id: int = field(compare=False)
    departed: float = field(compare=False)     # when it left the rate limiter
    z: float = field(compare=False)            # its standardised jitter sample
    skip: bool = field(compare=False)          # reordered: skips the delay
    duplicate: bytes | None = field(compare=False, default=None)


class Direction:
    """One direction of one link. ``arrive`` decides a packet's fate; the owner keeps
    the Held entries in its heap and calls ``reschedule`` after a change of settings."""

    def __init__(self, settings: Impairment, rng: random.Random | None = None):
        self.settings = settings
        self.rng = rng or random.Random()
        self.counters = Counters()
        self.bad = False                    # Gilbert-Elliott state
        self.rate_free = 0.0                # when the rate limiter is free again
        self.rate_waiting: deque[float] = deque()   # departure times of packets still in it
        self.last_release = 0.0
        self.seq = 0
        self.held = 0                       # packets of this direction still held
        self.passthrough = settings.is_zero  # nothing to do: verdict at once (while none held)

    # -- per packet -----------------------------------------------------------------

    def lost(self) -> bool:
        s = self.settings
        if s.burst is not None:
            g = s.burst
            rnd = self.rng.random
            lose = rnd() < (g.bad if self.bad else g.good)
            if self.bad:
                if rnd() < g.r:
                    self.bad = False
            elif rnd() < g.p:
                self.bad = True
            return lose
        return s.loss > 0 and self.rng.random() < s.loss

    def arrive(self, now: float, packet_id: int, size: int) -> Held | None:
        """The packet's release time, or None when it is dropped."""
        s = self.settings
        c = self.counters
        c.received += 1
        if (s.loss or s.burst) and self.lost():
            c.lost += 1
            return None
        departed = now
        if s.rate:
            q = self.rate_waiting
            while q and q[0] <= now:
                q.popleft()
            if len(q) >= s.queue:
                c.overflow += 1
                return None
            departed = max(now, self.rate_free) + (size + ETHERNET_OVERHEAD) * 8.0 / s.rate
            self.rate_free = departed
            q.append(departed)
        z = standard_sample(self.rng, s.distribution) if s.jitter else 0.0
        skip = bool(s.reorder) and self.rng.random() < s.reorder
        self.seq += 1
        held = Held(0.0, self.seq, packet_id, departed, z, skip)
        self._schedule(held)
        if skip:
            c.reordered += 1
        return held

    def _schedule(self, h: Held) -> None:
        s = self.settings
        if h.skip:
            h.release = h.departed
            return
        t = h.departed + s.delay + h.z * s.jitter
        if t < h.departed:
            t = h.departed                      # no packet leaves before it arrived
        if t < self.last_release:
            t = self.last_release               # nor before the one ahead of it
        h.release = t
        self.last_release = t

    def wants_duplicate(self) -> bool:
        return self.settings.duplicate > 0 and self.rng.random() < self.settings.duplicate

    # -- changes ----------------------------------------------------------------------

    def change(self, settings: Impairment, held: list[Held]) -> None:
        """New settings for new packets, and new release times for the packets still
        held (in their order, so a change never reorders): a change takes effect at once."""
        if settings.burst is None:
            self.bad = False
        if not settings.rate:
            self.rate_waiting.clear()
        self.settings = settings
        self.passthrough = settings.is_zero
        self.last_release = 0.0
        for h in sorted(held, key=lambda h: h.seq):
            self._schedule(h)


class Scheduler:
    """All held packets of all directions, by release time."""

    def __init__(self):
        self.heap: list[tuple[float, int, object, Held]] = []
        self._n = 0

    def push(self, owner: object, h: Held) -> None:
        self._n += 1
        heapq.heappush(self.heap, (h.release, self._n, owner, h))

    def next_release(self) -> float | None:
        return self.heap[0][0] if self.heap else None

    def due(self, now: float):
        heap = self.heap
        pop = heapq.heappop
        while heap and heap[0][0] <= now:
            _, _, owner, h = pop(heap)
            yield owner, h

    def held_by(self, owner: object) -> list[Held]:
        return [h for _, _, o, h in self.heap if o is owner]

    def rebuild(self) -> None:
        self.heap = [(h.release, n, o, h) for _, n, o, h in self.heap]
        heapq.heapify(self.heap)
