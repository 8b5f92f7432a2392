"""The shaper's control messages (lab/core/control.py carries them), one model per ``op``.

- ``{"op": "ping"}``: is it up; its pid and calibration.
- ``{"op": "set", "link": 3, "a2b": {...}, "b2a": {...}}``: the settings of one or both
  directions, as ``Impairment.to_wire`` writes them (seconds, probabilities 0..1, bit/s).
- ``{"op": "show"}``: every attached direction, its settings, counters and held packets.
- ``{"op": "trace"}``: per-packet times (a shaper started with ICELAB_SHAPER_TRACE=1).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from lab.core.control import Request
from lab.model.impairment import DEFAULT_QUEUE, DISTRIBUTIONS, GilbertElliott, Impairment

Probability = Field(ge=0, le=1)


class BurstWire(Request):
    p: float = Probability
    r: float = Probability
    bad: float = Field(1.0, ge=0, le=1)
    good: float = Field(0.0, ge=0, le=1)


class ImpairmentWire(Request):
    """One direction's settings; a field left out is nothing (no delay, no loss ...)."""

    delay: float = Field(0.0, ge=0)
    jitter: float = Field(0.0, ge=0)
    distribution: Literal[DISTRIBUTIONS] = "normal"       # type: ignore[valid-type]
    loss: float = Field(0.0, ge=0, le=1)
    burst: BurstWire | None = None
    rate: float = Field(0.0, ge=0)
    queue: int = Field(DEFAULT_QUEUE, ge=0)
    duplicate: float = Field(0.0, ge=0, le=1)
    reorder: float = Field(0.0, ge=0, le=1)

    def impairment(self) -> Impairment:
        d = self.model_dump()
        burst = d.pop("burst")
        return Impairment(**d, burst=GilbertElliott(**burst) if burst else None)


class Ping(Request):
    pass


class Show(Request):
    pass


class Trace(Request):
    pass


class SetLink(Request):
    link: int = Field(ge=0)
    a2b: ImpairmentWire | None = None
    b2a: ImpairmentWire | None = None
