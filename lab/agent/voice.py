"""A speech-like test signal for Chromium's fake microphone (``--use-file-for-fake-audio-capture``).

Chrome's default fake microphone beeps (a short 400 Hz tone, twice a second), and Chrome
processes microphone audio as connect-rtc-js asks, noise suppression included: within about
2.5 s the suppressor took the regular beeps for background noise and turned them down by 30
dB, so the lab's caller leg judged a long call's audio silent (docs/fidelity.md, 2026-12-07;
a steady tone fared worse). A real agent speaks; so does this signal: a pulse train whose pitch
wanders (100-165 Hz) through the first three formants of four vowels, in 0.3 s syllables with a
pause now and then. Chrome's processing keeps it (-8 to -16 dBFS at the caller leg through a
15 s call, where the beeps fell to -39). numpy only, a few tens of milliseconds to make.
"""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np

RATE = 48000
SYLLABLE = 0.3
#: first three formants (Hz) of /a/, /i/, /o/, /e/
VOWELS = ((700, 1220, 2600), (300, 2300, 3000), (500, 900, 2500), (400, 1900, 2550))


def _resonance(n: int, freq: float, bandwidth: float) -> np.ndarray:
    """The impulse response of a two-pole resonator, ``n`` samples of it (it has decayed)."""
    r = np.exp(-np.pi * bandwidth / RATE)
    k = np.arange(n)
    return (1 - r) * r ** k * np.sin(2 * np.pi * freq / RATE * (k + 1)) / np.sin(2 * np.pi * freq / RATE)


def voice(seconds: float = 6.0) -> np.ndarray:
    """Mono s16 samples at 48 kHz (Chrome loops the file)."""
    n = int(RATE * seconds)
    t = np.arange(n) / RATE
    f0 = 130 + 25 * np.sin(2 * np.pi * 0.7 * t) + 10 * np.sin(2 * np.pi * 2.3 * t)
    source = (np.cumsum(f0 / RATE) % 1.0) - 0.5            # a sawtooth: every harmonic of f0
    out = np.zeros(n)
    step = int(SYLLABLE * RATE)
    taps = 2048                                             # the resonances are 40 dB down by then
    size = 1 << (step + taps - 1).bit_length()              # FFT size: a power of two
    shapes = [sum(np.fft.rfft(_resonance(taps, f, 80 + f * 0.05), size) for f in v) for v in VOWELS]
    window = np.sin(np.pi * np.arange(step) / step) ** 2
    for i, start in enumerate(range(0, n, step)):
        seg = source[start:start + step]
        if i % 7 == 6:                                      # a pause now and then
            continue
        shaped = np.fft.irfft(np.fft.rfft(seg, size) * shapes[i % len(VOWELS)], size)[:len(seg)]
        out[start:start + len(seg)] = shaped * window[:len(seg)]
    return (out / np.max(np.abs(out)) * 0.5 * 32767).astype(np.int16)


def write_wav(path: Path, seconds: float = 6.0) -> Path:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes(voice(seconds).tobytes())
    return path
