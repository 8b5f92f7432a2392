"""The emulated browser's interarrival jitter is timed on the datagrams' arrival, as
libwebrtc's is, not on when the agent's event loop got round to each packet (issue 14:
the emulation read 24 ms where Chrome read 7 on the same lossy path)."""

from __future__ import annotations

import asyncio
import time

import pytest
from aiortc.rtcrtpreceiver import StreamStatistics
from aiortc.rtp import RtpPacket

from lab.agent.media import OPUS, AgentReceiver, ArrivalStatistics


def _packets(n: int):
    return [RtpPacket(payload_type=111, sequence_number=1000 + i, timestamp=960 * i, ssrc=42) for i in range(n)]


def _lagged_clock(n: int):
    """Arrivals every 20 ms exactly; the loop handles them in bursts of five, 80 ms late."""
    arrivals = [100.0 + 0.020 * i for i in range(n)]
    handled = [100.0 + 0.020 * (i - i % 5 + 4) + 0.001 * (i % 5) for i in range(n)]
    return arrivals, handled


def test_jitter_is_timed_on_arrival_not_on_the_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    n = 100
    arrivals, handled = _lagged_clock(n)
    now = iter(handled + handled)
    monkeypatch.setattr(time, "time", lambda: next(now))
    at: list[float] = []
    ours = ArrivalStatistics(48000, lambda: at[-1])
    theirs = StreamStatistics(48000)
    for p, a in zip(_packets(n), arrivals):
        at.append(a)
        theirs.add(p)
        ours.add(p)
    assert ours.jitter == 0
    assert ours.packets_received == theirs.packets_received == n
    assert theirs.jitter * 1000 / 48000 > 5      # aiortc's own reading: the loop's bursts


def test_the_receiver_keeps_its_statistics_on_arrival(monkeypatch: pytest.MonkeyPatch) -> None:
    class Transport:
        state = "new"

    n = 50
    arrivals, handled = _lagged_clock(n)
    now = iter(handled)
    at: list[float] = []
    rx = AgentReceiver(Transport(), lambda: at[-1])  # type: ignore[arg-type]
    rx._RTCRtpReceiver__codecs[111] = OPUS  # what receive() sets up
    monkeypatch.setattr(time, "time", lambda: next(now, handled[-1]))

    async def feed() -> None:
        for p, a in zip(_packets(n), arrivals):
            at.append(a)
            await rx._handle_rtp_packet(p, arrival_time_ms=0)

    try:
        asyncio.run(feed())
    finally:
        rx._RTCRtpReceiver__stop_decoder()  # the decoder thread its first frame started
    stream = rx._RTCRtpReceiver__remote_streams[42]
    assert isinstance(stream, ArrivalStatistics)
    assert stream.jitter == 0 and stream.packets_received == n
