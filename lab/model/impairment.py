"""Link impairments: what one direction of a link does to packets, and how files write it.

A link's ``impair`` gives settings for both directions, and ``a2b`` / ``b2a`` override
them field by field for one direction (``a2b`` is from the link's end ``a`` to end ``b``)::

    impair: {delay: 20ms, jitter: 2ms, loss: 1%}                 # both directions
    impair: {delay: 10ms, a2b: {rate: 1mbit}, b2a: {rate: 20mbit}}   # asymmetric broadband

Delay is one way: a link with ``delay: 20ms`` adds 40 ms to a round trip across it.
Everything here is pure data and text; ``lab.net.shaping`` applies it to a running lab.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from lab.core.errors import did_you_mean
from lab.core.units import (Issue, format_percent, format_rate, format_time, percent_setting, rate_setting,
                            time_setting)

DISTRIBUTIONS = ("normal", "uniform", "pareto", "paretonormal")
FIELDS = ("delay", "jitter", "distribution", "loss", "rate", "queue", "duplicate", "reorder")
DIRECTIONS = ("a2b", "b2a")
DEFAULT_QUEUE = 1000            # packets waiting for the rate limit (netem's default limit)
MAX_DELAY = 60.0                # seconds; more is a typo, not a network
ETHERNET_OVERHEAD = 14          # bytes the rate limit counts on top of the IP packet (as tc does)


@dataclass(frozen=True)
class GilbertElliott:
    """Bursty loss (Gilbert-Elliott): a good and a bad state. Each packet is lost with the
    probability of the state it meets (``good``, ``bad``), then the state changes: good to
    bad with probability ``p``, bad to good with ``r``. With ``bad`` = 1 and ``good`` = 0
    (the simple Gilbert model) the mean loss is p/(p+r) and bursts last 1/r packets on
    average. The parameters are netem's ``loss gemodel p r 1-h 1-k``."""

    p: float
    r: float
    bad: float = 1.0
    good: float = 0.0

    @property
    def mean_loss(self) -> float:
        pi_bad = self.p / (self.p + self.r) if self.p + self.r else 0.0
        return pi_bad * self.bad + (1 - pi_bad) * self.good

    @property
    def mean_burst(self) -> float:
        """Mean number of packets in a row spent in the bad state."""
        return 1 / self.r if self.r else math.inf

    @classmethod
    def from_mean(cls, mean: float, burst: float) -> "GilbertElliott":
        r = 1.0 / burst
        return cls(p=r * mean / (1 - mean), r=r)


@dataclass(frozen=True)
class Impairment:
    """One direction of a link. Times in seconds, probabilities 0..1, rate in bit/s."""

    delay: float = 0.0
    jitter: float = 0.0                  # standard deviation of the delay, whatever the distribution
    distribution: str = "normal"
    loss: float = 0.0                    # random (independent) loss
    burst: GilbertElliott | None = None  # bursty loss; replaces ``loss`` when set
    rate: float = 0.0                    # bit/s; 0 = unlimited
    queue: int = DEFAULT_QUEUE           # packets waiting for the rate limit; more are dropped
    duplicate: float = 0.0
    reorder: float = 0.0                 # this share of packets skips the delay (and overtakes)

    @property
    def is_zero(self) -> bool:
        return self == Impairment(queue=self.queue, distribution=self.distribution)

    def to_dict(self) -> dict:
        """The settings in the file's own words (only what differs from nothing)."""
        d: dict[str, Any] = {}
        if self.delay:
            d["delay"] = format_time(self.delay)
        if self.jitter:
            d["jitter"] = format_time(self.jitter)
            d["distribution"] = self.distribution
        if self.burst:
            b = self.burst
            d["loss"] = {"p": format_percent(b.p), "r": format_percent(b.r),
                         "bad": format_percent(b.bad), "good": format_percent(b.good)}
        elif self.loss:
            d["loss"] = format_percent(self.loss)
        if self.rate:
            d["rate"] = format_rate(self.rate)
            d["queue"] = self.queue
        if self.duplicate:
            d["duplicate"] = format_percent(self.duplicate)
        if self.reorder:
            d["reorder"] = format_percent(self.reorder)
        return d

    def to_wire(self) -> dict:
        """Exact numbers (for the shaper's control channel)."""
        d = asdict(self)
        return d

    @classmethod
    def from_wire(cls, d: dict) -> "Impairment":
        d = dict(d)
        if d.get("burst"):
            d["burst"] = GilbertElliott(**d["burst"])
        return cls(**d)

    def describe(self) -> str:
        parts = []
        d = self.to_dict()
        for k, v in d.items():
            if k == "distribution" or (k == "queue" and not self.rate):
                continue
            if isinstance(v, dict):
                b = self.burst
                v = f"{b.mean_loss * 100:.3g}% in bursts of {b.mean_burst:.3g} (gilbert-elliott p={b.p * 100:.3g}% " \
                    f"r={b.r * 100:.3g}%" + ("" if (b.bad, b.good) == (1.0, 0.0) else f" bad={v['bad']} good={v['good']}") + ")"
            parts.append(f"{k} {v}" + (f" ({self.distribution})" if k == "jitter" else ""))
        return ", ".join(parts) or "none"


@dataclass(frozen=True)
class LinkImpairment:
    """Both directions of a link, in the file's orientation (a2b: from end a to end b)."""

    a2b: Impairment = field(default_factory=Impairment)
    b2a: Impairment = field(default_factory=Impairment)

    def get(self, direction: str) -> Impairment:
        return self.a2b if direction == "a2b" else self.b2a

    def to_dict(self) -> dict:
        a, b = self.a2b.to_dict(), self.b2a.to_dict()
        if a == b:
            return a
        return {"a2b": a, "b2a": b}


# -- parsing with problems ------------------------------------------------------------------


def parse_time(value: Any, path: tuple, issues: list[Issue], what: str) -> float | None:
    return time_setting(value, path, issues, what, longest=MAX_DELAY)


def _parse_loss(value: Any, path: tuple, issues: list[Issue]) -> tuple[float, GilbertElliott | None] | None:
    if not isinstance(value, dict):
        x = percent_setting(value, path, issues, "loss")
        return None if x is None else (x, None)
    keys = set(value)
    if keys <= {"mean", "burst"} and keys:
        if "mean" not in value or "burst" not in value:
            issues.append((path, "bursty loss needs both 'mean' and 'burst'", "e.g. loss: {mean: 5%, burst: 4}"))
            return None
        mean = percent_setting(value["mean"], path + ("mean",), issues, "mean loss", below_100=True)
        burst = value["burst"]
        if isinstance(burst, bool) or not isinstance(burst, (int, float)) or burst < 1:
            issues.append((path + ("burst",), f"burst {burst!r} must be a number of packets, at least 1",
                           "the mean length of a loss burst in packets, e.g. burst: 4"))
            return None
        if mean is None:
            return None
        return (0.0, GilbertElliott.from_mean(mean, float(burst)) if mean else None)
    if keys <= {"p", "r", "bad", "good"} and {"p", "r"} <= keys:
        got = {}
        for k in ("p", "r", "bad", "good"):
            if k in value:
                got[k] = percent_setting(value[k], path + (k,), issues, k)
        if any(v is None for v in got.values()):
            return None
        if got["r"] == 0 and got["p"] > 0:
            issues.append((path + ("r",), "r is 0%: once bad, the link never recovers", "give r above 0%, e.g. r: 25% for bursts of 4"))
            return None
        return (0.0, GilbertElliott(**got))
    unknown = sorted(keys - {"p", "r", "bad", "good", "mean", "burst"})
    msg = f"unknown field '{unknown[0]}' in loss" if unknown else "incomplete bursty loss"
    issues.append((path + ((unknown[0],) if unknown else ()), msg,
                   "loss is '2%' (random), {mean: 5%, burst: 4} or {p: 1%, r: 25%, bad: 100%, good: 0%} (Gilbert-Elliott)"))
    return None


def parse_fields(spec: Any, path: tuple, issues: list[Issue], base: Impairment | None = None) -> Impairment | None:
    """Settings of one direction (or of both), over ``base``. None when any is wrong."""
    if not isinstance(spec, dict):
        issues.append((path, f"must be a mapping of settings, not {type(spec).__name__}",
                       "e.g. {delay: 20ms, loss: 1%}"))
        return None
    changes: dict[str, Any] = {}
    n = len(issues)
    for key, value in spec.items():
        p = path + (key,)
        if key in ("delay", "jitter"):
            changes[key] = parse_time(value, p, issues, key)
        elif key == "distribution":
            if value not in DISTRIBUTIONS:
                issues.append((p, f"unknown distribution '{value}'", did_you_mean(str(value), DISTRIBUTIONS, "distributions")))
            else:
                changes[key] = value
        elif key == "loss":
            got = _parse_loss(value, p, issues)
            if got is not None:
                changes["loss"], changes["burst"] = got
        elif key == "rate":
            changes[key] = rate_setting(value, p, issues)
        elif key == "queue":
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                issues.append((p, f"queue {value!r} must be a whole number of packets, at least 1",
                               f"packets that may wait for the rate limit (default {DEFAULT_QUEUE})"))
            else:
                changes[key] = value
        elif key in ("duplicate", "reorder"):
            changes[key] = percent_setting(value, p, issues, key)
        else:
            allowed = FIELDS + (DIRECTIONS if len(path) <= 3 else ())
            issues.append((p, f"unknown impairment '{key}'", did_you_mean(str(key), allowed, "settings")))
    if len(issues) > n:
        return None
    return replace(base or Impairment(), **changes)


def parse_link_impair(spec: Any, path: tuple = ()) -> tuple[LinkImpairment | None, list[Issue]]:
    """A link's ``impair`` value: shared settings, then per-direction overrides."""
    issues: list[Issue] = []
    if spec is None:
        return None, issues
    if not isinstance(spec, dict):
        issues.append((path, f"must be a mapping, not {type(spec).__name__}",
                       "e.g. impair: {delay: 20ms} or impair: {a2b: {rate: 1mbit}, b2a: {rate: 10mbit}}"))
        return None, issues
    shared = {k: v for k, v in spec.items() if k not in DIRECTIONS}
    both = parse_fields(shared, path, issues)
    dirs = {}
    for d in DIRECTIONS:
        if d in spec:
            dirs[d] = parse_fields(spec[d], path + (d,), issues, both)
        else:
            dirs[d] = both
    if issues:
        return None, issues
    for d in DIRECTIONS:
        if dirs[d] != both or d == "a2b":
            check_consistency(dirs[d], path + ((d,) if d in spec else ()), issues)
    if issues:
        return None, issues
    return LinkImpairment(dirs["a2b"], dirs["b2a"]), issues


def check_consistency(imp: Impairment, path: tuple, issues: list[Issue]) -> None:
    """Settings that parse but make no sense together."""
    if imp.reorder and not imp.delay:
        issues.append((path + ("reorder",), "reorder needs a delay: packets overtake the delayed ones",
                       "add a delay, e.g. delay: 10ms, reorder: 25%"))
