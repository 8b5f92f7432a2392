"""Recognisable audio for the lab's calls: tones at known frequencies, and a sink that finds
the dominant frequency and counts what it heard, so audio is verified at the far end by
frequency and energy rather than trusted.

It is here, in the leaf package, because both ends of a call use it: the emulated softphone
(lab.agent) speaks and hears the agent's tone, the media edge (lab.services) plays hold
audio and the caller's tone and checks the agent's. Like the STUN codec it is pure signal
code with no state of the lab: samples in, samples or a frequency out (it needs numpy and
aiortc's track and frame types, imported only by who imports it).
"""

from __future__ import annotations

import asyncio
import fractions
import math
import time
from typing import Callable

import numpy as np
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from av import AudioFrame

RATE = 48000
PTIME = 0.020
SAMPLES = int(RATE * PTIME)

AGENT_TONE = 600.0     # what the agent's "microphone" says
CALLER_TONE = 1000.0   # the caller leg
HOLD_TONE = 350.0      # the edge's hold audio before accept


def tone_samples(freq: float, start: int, n: int = SAMPLES, amplitude: float = 0.3) -> np.ndarray:
    t = (np.arange(start, start + n) / RATE)
    return (amplitude * 32767 * np.sin(2 * math.pi * freq * t)).astype(np.int16)


class SourceTrack(MediaStreamTrack):
    """20 ms mono s16 frames, paced in real time; ``source(start, n)`` gives the samples
    (a tone, or a mixer's output)."""

    kind = "audio"

    def __init__(self, source: Callable[[int, int], np.ndarray]):
        super().__init__()
        self.source = source
        self._pts = 0
        self._t0: float | None = None

    async def recv(self) -> AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        if self._t0 is None:
            self._t0 = time.monotonic()
        wait = self._t0 + self._pts / RATE - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
        samples = self.source(self._pts, SAMPLES)
        frame = AudioFrame.from_ndarray(samples.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = RATE
        frame.pts = self._pts
        frame.time_base = fractions.Fraction(1, RATE)
        self._pts += SAMPLES
        return frame


def tone_track(freq: float) -> SourceTrack:
    return SourceTrack(lambda start, n: tone_samples(freq, start, n))


def dominant_frequency(samples: np.ndarray, rate: int = RATE) -> tuple[float, float]:
    """(frequency in Hz of the strongest FFT bin, RMS level in dBFS)."""
    x = samples.astype(np.float64)
    if x.size == 0:
        return 0.0, -math.inf
    rms = math.sqrt(float(np.mean(x * x))) / 32768
    spectrum = np.abs(np.fft.rfft(x * np.hanning(x.size)))
    freq = float(np.fft.rfftfreq(x.size, 1 / rate)[int(np.argmax(spectrum))])
    return freq, (20 * math.log10(rms) if rms > 0 else -math.inf)


class ToneSink:
    """Consumes a received track; keeps the last second per ``label`` period for analysis."""

    def __init__(self, track: MediaStreamTrack):
        self.track = track
        self.frames = 0
        self.window: list[np.ndarray] = []
        self._task = asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        try:
            while True:
                frame = await self.track.recv()
                a = frame.to_ndarray()
                # decoded opus is interleaved stereo: keep one channel
                mono = a.reshape(-1, len(frame.layout.channels))[:, 0] if a.ndim == 2 and a.shape[0] == 1 \
                    else a[0]
                self.frames += 1
                self.window.append(mono.astype(np.int16))
                if len(self.window) > 50:
                    self.window.pop(0)
        except (MediaStreamError, asyncio.CancelledError):
            pass

    def reset(self) -> None:
        self.window.clear()

    def heard(self) -> tuple[float, float]:
        """Dominant frequency and level of the last second heard."""
        if not self.window:
            return 0.0, -math.inf
        return dominant_frequency(np.concatenate(self.window))

    def stop(self) -> None:
        self._task.cancel()
