"""Audio levels both ways while Talking, reported every few hundred milliseconds for a
watcher (``icelab serve``'s meters), as Chrome's getStats reports them: ``audioLevel`` of the
``media-source`` (what the microphone gives the call) and of the ``inbound-rtp`` (what is
heard), linear 0..1 where 1.0 is full scale: the peak absolute sample of the period over
32767, libwebrtc's full-range AudioLevel.

A level is a line of its own on the call's JSON-lines stream, ``{"level": {...}}``, never an
event of the timeline: timelines, outcomes and reports stay exactly what they were without
a watcher, and a call nobody watches reports none (``levels`` 0 in the agent's config).
"""

from __future__ import annotations

import asyncio
import math
from typing import Any, Callable

import numpy as np

FULL_SCALE = 32767


def level_of(samples: np.ndarray) -> float:
    """audioLevel of s16 samples: peak absolute value over full scale (0..1)."""
    if samples.size == 0:
        return 0.0
    return min(1.0, float(np.max(np.abs(samples.astype(np.int32)))) / FULL_SCALE)


def dbfs(level: float) -> float | None:
    return round(20 * math.log10(level), 1) if level > 0 else None


class SourceMeter:
    """The peak of what a ``lab.core.audio.SourceTrack`` produced since the last ``take``:
    it wraps the track's ``source``, so only samples the sender really pulled are counted
    (nothing before DTLS is up, as nothing reaches Chrome's sender before then either)."""

    def __init__(self, track: Any):
        self.peak = 0.0
        inner = track.source

        def source(start: int, n: int) -> np.ndarray:
            samples = inner(start, n)
            self.peak = max(self.peak, level_of(samples))
            return samples

        track.source = source

    def take(self) -> float:
        peak, self.peak = self.peak, 0.0
        return peak


class SinkMeter:
    """The peak of the frames a ``lab.core.audio.ToneSink`` received since the last ``take``
    (a stalled path reads 0, not the last second heard)."""

    def __init__(self) -> None:
        self.seen = 0

    def take(self, sink: Any) -> float:
        if sink is None:
            return 0.0
        new, self.seen = sink.frames - self.seen, sink.frames
        frames = sink.window[-new:] if 0 < new <= len(sink.window) else sink.window if new > 0 else []
        return max((level_of(f) for f in frames), default=0.0)


async def report(media: Any, write: Callable[[dict[str, Any]], None], interval: float) -> None:
    """Until cancelled: every ``interval`` s, ``write({"out": L, "in": L, "out_dbfs": .., "in_dbfs": ..})``
    for the agent's ``media`` (lab.agent.media.AgentMedia; its sink appears once media is up)."""
    out, inn = SourceMeter(media.track), SinkMeter()
    while True:
        await asyncio.sleep(interval)
        o, i = out.take(), inn.take(media.sink)
        write({"out": round(o, 4), "in": round(i, 4), "out_dbfs": dbfs(o), "in_dbfs": dbfs(i)})
