"""The light media path for load runs: the lab's tones encoded to Opus once per process and
sent as they are, and received audio verified by its payloads rather than decoded.

Why: with the full path each call encodes 50 Opus frames a second (in aiortc's thread pool)
and decodes 50 (in a decoder thread per receiver), about 3 % of a core per call here. A load
run needs hundreds of calls, and what it verifies is that each call's audio arrived, whole
and in order, from the right far end. A pre-encoded frame that arrives byte for byte is the
audio the full path would have decoded: :func:`encoded_tone` is checked by decoding it once
(tests/agent/test_lightaudio.py), so recognising its payloads is recognising the tone.

ICE, DTLS, SRTP, RTP and RTCP stay aiortc's own: only the encoder and the decoder are skipped.
Both ends use it (the emulated softphone and the media edge), hence the leaf package, as
:mod:`lab.core.audio`.
"""

from __future__ import annotations

import asyncio
import fractions
import math
import time
import zlib
from dataclasses import dataclass
from functools import lru_cache
from typing import Callable

from aiortc.codecs.opus import OpusDecoder, OpusEncoder
from aiortc.jitterbuffer import JitterFrame
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from aiortc.rtcrtpreceiver import StreamStatistics
from aiortc.rtp import RtpPacket
import numpy as np
from av import AudioFrame, Packet

from .audio import PTIME, RATE, SAMPLES, dominant_frequency, tone_samples

#: frames in a tone's cycle: 1 s of audio; a frame's place in the cycle is checked against
#: its RTP sequence number, so a duplicated, reordered or foreign frame is seen
CYCLE = 50


@dataclass(frozen=True)
class EncodedTone:
    freq: float
    payloads: tuple[bytes, ...]
    dbfs: float                      # the level a decoder measures
    heard_hz: float                  # the frequency a decoder finds (the tone's: tests check it)


@lru_cache(maxsize=None)
def encoded_tone(freq: float) -> EncodedTone:
    """``CYCLE`` consecutive 20 ms frames of the tone, encoded as aiortc's sender would
    (libopus, 48 kHz stereo, voip). The lab's tones fit a whole number of periods in 20 ms,
    so plain tone frames would all be alike and so would many of their payloads; the level
    steps down 1.5 dB over the cycle instead, which makes every frame's payload distinct (the
    receiver checks each frame's place in the cycle) and leaves the frequency as it is. The
    first frames of an encoder differ from the steady ones: the last of three cycles is kept."""
    enc = OpusEncoder()
    out: list[bytes] = []
    for i in range(3 * CYCLE):
        samples = tone_samples(freq, i * SAMPLES, amplitude=_amplitude(i % CYCLE))
        frame = AudioFrame.from_ndarray(samples.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = RATE
        frame.pts = i * SAMPLES
        frame.time_base = fractions.Fraction(1, RATE)
        payloads, _ = enc.encode(frame)
        out += payloads
    kept = tuple(out[-CYCLE:])
    heard_hz, dbfs = decoded(kept)
    return EncodedTone(freq, kept, dbfs, heard_hz)


def decoded(payloads: tuple[bytes, ...]) -> tuple[float, float]:
    """What a decoder hears in the payloads (twice through, the second time measured, as the
    stream plays them): the dominant frequency and the level, as the full path's sink reports."""
    dec = OpusDecoder()
    mono = []
    for i, p in enumerate(payloads * 2):
        for f in dec.decode(JitterFrame(p, i * SAMPLES)):
            mono.append(f.to_ndarray().reshape(-1, len(f.layout.channels))[:, 0])
    return dominant_frequency(np.concatenate(mono[len(payloads):]))


def _amplitude(place: int) -> float:
    return 0.3 * 10 ** (-1.5 * place / CYCLE / 20)


class PacketTrack(MediaStreamTrack):
    """20 ms Opus packets, paced in real time, taken from the tone ``source()`` names at each
    frame (a mixer: the edge switches from hold audio to the caller's voice at accept). aiortc's
    sender packs an ``av.Packet`` as it is (no encoder)."""

    kind = "audio"

    def __init__(self, source: Callable[[], float]):
        super().__init__()
        self.source = source
        self._i = 0
        self._t0: float | None = None

    async def recv(self) -> Packet:
        if self.readyState != "live":
            raise MediaStreamError
        if self._t0 is None:
            self._t0 = time.monotonic()
        # always a real suspension, even when late: aiortc's sender sends without one, so a late
        # track that returned at once would send its backlog without letting any other call run
        await asyncio.sleep(max(0.0, self._t0 + self._i * PTIME - time.monotonic()))
        tone = encoded_tone(self.source())
        packet = Packet(tone.payloads[self._i % CYCLE])
        packet.pts = self._i * SAMPLES
        packet.time_base = fractions.Fraction(1, RATE)
        self._i += 1
        return packet


def tone_packets(freq: float) -> PacketTrack:
    return PacketTrack(lambda: freq)


class PayloadSink:
    """The light path's ear: each received RTP payload is looked up among the known tones'
    frames; the last second's frames say which tone was heard, and a frame counts as in
    sequence when its place in its tone's cycle moved on with the RTP sequence number.

    ``heard()`` and ``reset()`` answer as :class:`lab.core.audio.ToneSink` does (the tone's
    frequency and level, or nothing), so both paths report a call's audio the same way."""

    def __init__(self, tones: tuple[float, ...]):
        self.index, self.levels = _index(tuple(tones))
        self.window: list[float | None] = []     # the last second: the tone of each frame (None: unknown)
        self.frames = 0
        self.matched = 0
        self.in_sequence = 0
        self.foreign = 0
        self._last: tuple[int, int] | None = None     # (sequence number, place in the cycle)

    def add(self, sequence_number: int, payload: bytes) -> None:
        self.frames += 1
        hit = self.index.get(zlib.crc32(payload))
        if hit is None:
            self.foreign += 1
            self.window.append(None)
        else:
            freq, place = hit
            self.matched += 1
            if self._last is not None:
                step = (sequence_number - self._last[0]) & 0xFFFF
                if (self._last[1] + step) % CYCLE == place:
                    self.in_sequence += 1
            else:
                self.in_sequence += 1
            self._last = (sequence_number, place)
            self.window.append(freq)
        if len(self.window) > CYCLE:
            del self.window[0]

    def reset(self) -> None:
        self.window.clear()

    def heard(self) -> tuple[float, float]:
        """The tone of most of the last second's frames and its level; nothing if most frames
        were of no known tone."""
        if not self.window:
            return 0.0, -math.inf
        counts: dict[float | None, int] = {}
        for f in self.window:
            counts[f] = counts.get(f, 0) + 1
        best = max(counts, key=lambda k: counts[k])
        if best is None or 2 * counts[best] <= len(self.window):
            return 0.0, -math.inf
        return best, self.levels[best]

    def counts(self) -> dict[str, int]:
        return {"frames": self.frames, "matched": self.matched, "in_sequence": self.in_sequence,
                "foreign": self.foreign}

    def stop(self) -> None:
        pass


@lru_cache(maxsize=None)
def _index(tones: tuple[float, ...]) -> tuple[dict[int, tuple[float, int]], dict[float, float]]:
    """CRC of each known frame -> (its tone, its place in the cycle); each tone's level. Shared
    by every sink of the process (read only): a media edge makes one per call."""
    index: dict[int, tuple[float, int]] = {}
    levels: dict[float, float] = {}
    for f in tones:
        tone = encoded_tone(f)
        levels[f] = tone.dbfs
        for i, p in enumerate(tone.payloads):
            index[zlib.crc32(p)] = (f, i)
    return index, levels


def receive_payloads(receiver, sink: PayloadSink) -> None:
    """Make an ``RTCRtpReceiver`` hand its packets to ``sink`` instead of its jitter buffer
    and decoder. Its RTP statistics (received, lost, jitter) and RTCP reports stay aiortc's:
    they come from the same per-source statistics the full path fills. The DTLS transport
    looks ``_handle_rtp_packet`` up on the receiver, so an instance attribute replaces it."""
    streams = receiver._RTCRtpReceiver__remote_streams

    async def handle(packet: RtpPacket, arrival_time_ms: int) -> None:
        if packet.ssrc not in streams:
            streams[packet.ssrc] = StreamStatistics(RATE)
        streams[packet.ssrc].add(packet)
        sink.add(packet.sequence_number, packet.payload)

    receiver._handle_rtp_packet = handle
