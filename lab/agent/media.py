"""The agent's media: ICE connectivity checks, DTLS and SRTP audio over the relays the
browser-faithful gatherer allocated, built from aiortc's ORTC classes.

aiortc's ``RTCPeerConnection`` gathers for itself (first TURN URL only, 5 s cut-off), so the
agent does not use it. Instead:

- :class:`RelayConnection` is an ``aioice.Connection`` whose ``get_component_candidates``
  returns the relay candidates gathered by :mod:`lab.agent.gather` (their allocations become
  the connection's sockets) instead of gathering again;
- :class:`RelayIceGatherer` is an ``RTCIceGatherer`` over that connection;
- :class:`AgentReceiver` is an ``RTCRtpReceiver`` with its remote track;
- ``RTCIceTransport`` (controlling: the agent offers), ``RTCDtlsTransport`` (server, as ORTC
  derives from the controlling role, matching the edge's ``a=setup:active``),
  ``RTCRtpSender`` with the agent's tone and ``RTCRtpReceiver`` do the rest.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from typing import Any, Callable

from aioice import Candidate, Connection, TransportPolicy
from aioice.ice import StunProtocol
from aiortc import (RTCCertificate, RTCDtlsTransport, RTCIceGatherer, RTCIceTransport, RTCRtpReceiver,
                    RTCRtpSender)
from aiortc.rtcrtpreceiver import RemoteStreamTrack, StreamStatistics
from aiortc.utils import uint16_gt
from aiortc.rtp import RtcpRrPacket, RtcpSrPacket
from aiortc.sdp import candidate_from_sdp
from aiortc.rtcrtpparameters import (RTCRtcpParameters, RTCRtpCodecParameters, RTCRtpDecodingParameters,
                                     RTCRtpReceiveParameters, RTCRtpSendParameters)
from aiortc.sdp import SessionDescription

from lab.core import icerestart
from lab.core.audio import AGENT_TONE, ToneSink, tone_track
from .gather import Relay

# When Chrome reports iceConnectionState "disconnected" after the path dies (libwebrtc
# p2p_constants.h): a stable connection is pinged every 2.5 s
# (STRONG_AND_STABLE_WRITABLE_CONNECTION_PING_INTERVAL), so the first unanswered ping goes
# 0-2.5 s after the cut; the connection turns unwritable once at least 5 pings are unanswered
# (CONNECTION_WRITE_CONNECT_FAILURES) and 5 s have passed since the first of them
# (CONNECTION_WRITE_CONNECT_TIMEOUT), checked on the 0.9 s ping ticks that follow
# (WEAK_OR_STABILIZING_WRITABLE_CONNECTION_PING_INTERVAL): 5.0-8.4 s after the last answer.
# The lab cannot see Chrome's ping phase, so it takes the middle, 6.7 s; Chromium 156 measured
# here 6.9 s and 5.3 s after the cut (docs/fidelity.md). RTP stops with the path, so "the last datagram
# received" stands for the last answered ping.
ICE_DISCONNECTED_AFTER = 6.7
ICE_WATCH_INTERVAL = 0.1

OPUS = RTCRtpCodecParameters(mimeType="audio/opus", clockRate=48000, channels=2, payloadType=111,
                             parameters={"minptime": 20, "useinbandfec": 1, "usedtx": 0})


class RelayConnection(Connection):
    """An ICE agent whose local candidates are relays allocated beforehand (RFC 8445
    section 5.1.1: gathering); checks, nomination and consent are aioice's."""

    def __init__(self, relays: list[Relay], **kw: Any):
        super().__init__(ice_controlling=True, transport_policy=TransportPolicy.RELAY, **kw)
        self.relays = relays
        #: when the datagram the DTLS transport is handling now arrived (time.time())
        self.arrived: float | None = None

    def data_received(self, data: bytes, component: int) -> None:
        self._queue.put_nowait((data, component, time.time()))  # type: ignore[arg-type]

    async def recvfrom(self) -> tuple[bytes, int]:
        data, component, self.arrived = await super().recvfrom()  # type: ignore[misc]
        return data, component

    async def get_component_candidates(self, component: int, addresses: list[str],
                                       timeout: int = 5) -> list[Candidate]:
        out = []
        for relay in self.relays:
            if relay.candidate.component != component:
                continue
            protocol = StunProtocol(self)
            relay.transport.attach(protocol)
            protocol.local_candidate = relay.candidate
            self._protocols.append(protocol)
            out.append(relay.candidate)
        return out


class AgentSender(RTCRtpSender):
    """``RTCRtpSender`` whose round trip (RFC 3550 section 6.4.1: A - LSR - DLSR) is timed as
    a browser times it, on the datagrams, not on the event loop: the sender report from when
    it was handed to the socket, the receiver report from when its datagram arrived
    (:attr:`RelayConnection.arrived`), not when the DTLS task got round to it after the audio
    queued before it (20-90 ms of loop lag measured on this 2-core machine under load). The
    figure is the last measurement, as Chrome's ``remote-inbound-rtp.roundTripTime`` is
    (libwebrtc ``rtc_stats_collector.cc``: ``report_block.last_rtt()``), not aiortc's average
    (``RTT_ALPHA`` 0.85) that keeps the call's first sample, taken while DTLS and the encoder
    were starting, for most of a short call."""

    def __init__(self, track: Any, transport: RTCDtlsTransport, arrived: Callable[[], float | None]):
        super().__init__(track, transport)
        self.arrived = arrived
        self.sr_sent: dict[int, float] = {}
        self.rtt: float | None = None

    async def _send_rtcp(self, packets: list) -> None:
        await super()._send_rtcp(packets)
        now = time.time()
        for p in packets:
            if isinstance(p, RtcpSrPacket):
                self.sr_sent[(p.sender_info.ntp_timestamp >> 16) & 0xFFFFFFFF] = now

    async def _handle_rtcp_packet(self, packet: Any) -> None:
        now = self.arrived() or time.time()
        if isinstance(packet, (RtcpRrPacket, RtcpSrPacket)):
            for r in packet.reports:
                if r.ssrc == self._ssrc and r.dlsr and r.lsr in self.sr_sent:
                    self.rtt = max(0.0, now - self.sr_sent[r.lsr] - r.dlsr / 65536)
        await super()._handle_rtcp_packet(packet)


class RelayIceGatherer(RTCIceGatherer):
    """``RTCIceGatherer`` over a :class:`RelayConnection` (aiortc's transports reach the ICE
    agent through the gatherer's ``_connection``, which this sets at construction)."""

    def __init__(self, connection: RelayConnection):
        super().__init__(iceServers=[])
        self._connection = connection


class ArrivalStatistics(StreamStatistics):
    """aiortc's per-stream receive statistics with each packet's interarrival jitter (RFC 3550
    section 6.4.1, A.8) timed on when its datagram arrived, as libwebrtc times it
    (``ReceiveStatisticsImpl`` on the packet's arrival time), not on ``time.time()`` when the
    DTLS task got round to it: the agent's loop lag (20-90 ms on this 2-core machine under
    load) read as jitter, 24 ms where Chrome saw 7 on the same lossy path."""

    def __init__(self, clockrate: int, arrived: Callable[[], float | None]):
        super().__init__(clockrate)
        self.arrived = arrived

    def add(self, packet: Any) -> None:
        # StreamStatistics.add (aiortc 1.16) with the arrival as the datagram's
        in_order = self.max_seq is None or uint16_gt(packet.sequence_number, self.max_seq)
        self.packets_received += 1
        if self.base_seq is None:
            self.base_seq = packet.sequence_number
        if in_order:
            arrival = int((self.arrived() or time.time()) * self._clockrate)
            if self.max_seq is not None and packet.sequence_number < self.max_seq:
                self.cycles += 1 << 16
            self.max_seq = packet.sequence_number
            if packet.timestamp != self._last_timestamp and self.packets_received > 1:
                diff = abs((arrival - self._last_arrival) - (packet.timestamp - self._last_timestamp))
                self._jitter_q4 += diff - ((self._jitter_q4 + 8) >> 4)
            self._last_arrival = arrival
            self._last_timestamp = packet.timestamp


class AgentReceiver(RTCRtpReceiver):
    """``RTCRtpReceiver`` with its remote track made at construction (what
    ``RTCPeerConnection`` does for the receivers it creates), its jitter timed on the
    datagrams' arrival (:class:`ArrivalStatistics`) when ``arrived`` is given."""

    def __init__(self, transport: RTCDtlsTransport, arrived: Callable[[], float | None] | None = None):
        super().__init__("audio", transport)
        self._track = RemoteStreamTrack(kind="audio")
        self.arrived = arrived

    async def _handle_rtp_packet(self, packet: Any, arrival_time_ms: int) -> None:
        if self.arrived is not None:
            # aiortc makes a stream's statistics on its first packet, in a name-mangled dict
            streams = self._RTCRtpReceiver__remote_streams  # type: ignore[attr-defined]
            if packet.ssrc not in streams:
                codec = self._RTCRtpReceiver__codecs.get(packet.payload_type)  # type: ignore[attr-defined]
                if codec is not None:
                    streams[packet.ssrc] = ArrivalStatistics(codec.clockRate, self.arrived)
        await super()._handle_rtp_packet(packet, arrival_time_ms)


class AgentMedia:
    def __init__(self, freq: float = AGENT_TONE):
        self.gatherer: RelayIceGatherer | None = None
        self.ice: RTCIceTransport | None = None
        self.dtls: RTCDtlsTransport | None = None
        self.sender: RTCRtpSender | None = None
        self.receiver: RTCRtpReceiver | None = None
        self.sink: ToneSink | None = None
        self.track = tone_track(freq)
        self.certificate = RTCCertificate.generateCertificate()
        self.ufrag = secrets.token_hex(2)
        self.pwd = secrets.token_hex(12)
        self.cname = secrets.token_hex(8)
        self.ice_state = "new"
        self.relays: list[Relay] = []
        self._watch: asyncio.Task | None = None

    def fingerprint(self) -> str:
        fp = self.certificate.getFingerprints()[0]
        return f"{fp.algorithm} {fp.value}"

    async def start(self, relays: list[Relay], answer_sdp: str, remote_candidates: list[dict[str, Any]],
                    on_event: Callable[[str], None] = lambda name: None,
                    on_ice_state: Callable[[str, float], None] | None = None) -> None:
        """Connectivity checks, DTLS, then audio both ways; ``on_event`` marks each step,
        ``on_ice_state(state, idle)`` reports the browser's iceConnectionState changes
        (:meth:`watch`)."""
        desc = SessionDescription.parse(answer_sdp)
        m = desc.media[0]
        self.relays = list(relays)
        conn = RelayConnection(relays, local_username=self.ufrag, local_password=self.pwd)
        self.gatherer = RelayIceGatherer(conn)
        await self.gatherer.gather()
        self.ice = RTCIceTransport(self.gatherer)

        @self.ice.on("statechange")
        def _state() -> None:
            self.ice_state = self.ice.state

        for c in remote_candidates:
            cand = candidate_from_sdp(c["candidate"].split(":", 1)[1])
            cand.sdpMid, cand.sdpMLineIndex = c.get("sdpMid"), c.get("sdpMLineIndex")
            await self.ice.addRemoteCandidate(cand)
        await self.ice.addRemoteCandidate(None)
        self.dtls = RTCDtlsTransport(self.ice, [self.certificate])
        # the current connection's: an ICE restart puts a new one under the transport
        self.sender = AgentSender(self.track, self.dtls, lambda: self.ice._connection.arrived)
        self.receiver = AgentReceiver(self.dtls, lambda: self.ice._connection.arrived)
        remote_ssrc = m.ssrc[0].ssrc if m.ssrc else None
        await self.ice.start(m.ice)
        if self.ice.state != "completed":
            raise ConnectionError(f"ICE {self.ice.state}")
        on_event("ice_completed")
        if on_ice_state is not None:
            on_ice_state("connected", 0.0)
            self._watch = asyncio.ensure_future(self.watch(on_ice_state))
        await self.dtls.start(m.dtls)
        on_event("dtls_connected")
        await self.sender.send(RTCRtpSendParameters(
            codecs=[OPUS], muxId="0", rtcp=RTCRtcpParameters(cname=self.cname, mux=True)))
        await self.receiver.receive(RTCRtpReceiveParameters(
            codecs=[OPUS], muxId="0", rtcp=RTCRtcpParameters(mux=True),
            encodings=[RTCRtpDecodingParameters(ssrc=remote_ssrc, payloadType=111)] if remote_ssrc else []))
        self.sink = ToneSink(self.receiver.track)

    def new_credentials(self) -> None:
        """``createOffer({iceRestart: true})``: new local ICE credentials (RFC 8445 section 9)."""
        self.ufrag = secrets.token_hex(2)
        self.pwd = secrets.token_hex(12)

    async def restart(self, relays: list[Relay], answer_sdp: str, remote_candidates: list[dict[str, Any]],
                      timeout: float | None = None) -> None:
        """An ICE restart on the existing transports: checks from the new ``relays`` with the
        credentials of :meth:`new_credentials` against the answer's, then the new connection
        under the same ``RTCIceTransport`` (lab/core/icerestart.py): DTLS, SRTP, the sender and
        the receiver carry on. ConnectionError when media never started or no pair works (the
        old relays are kept then)."""
        if self.ice is None or self.dtls is None or self.ice.state != "completed":
            raise ConnectionError("no media to restart")
        m = SessionDescription.parse(answer_sdp).media[0]
        conn = RelayConnection(relays, local_username=self.ufrag, local_password=self.pwd)
        await conn.gather_candidates()
        cands = icerestart.remote_candidates(remote_candidates)
        await icerestart.restart(self.ice, conn, m.ice, cands, timeout=timeout,
                                 on_datagram=lambda item: setattr(conn, "arrived", item[2]))
        self.relays = list(relays)

    async def stats(self) -> dict[str, Any]:
        """Packets both ways, loss, jitter and RTT, from aiortc's RTCP-based statistics."""
        out: dict[str, Any] = {"packets_sent": 0, "packets_received": 0, "packets_lost": 0,
                               "jitter_ms": None, "rtt_ms": None, "remote_packets_received": None,
                               "remote_packets_lost": None}
        if self.sender is None or self.receiver is None:
            return out
        for report in (await self.sender.getStats(), await self.receiver.getStats()):
            for s in report.values():
                t = type(s).__name__
                if t == "RTCOutboundRtpStreamStats":
                    out["packets_sent"] = s.packetsSent
                elif t == "RTCInboundRtpStreamStats":
                    out["packets_received"] = s.packetsReceived
                    out["packets_lost"] = s.packetsLost
                    out["jitter_ms"] = round(s.jitter * 1000 / 48000, 2) if s.jitter is not None else None
                elif t == "RTCRemoteInboundRtpStreamStats":
                    out["remote_packets_lost"] = s.packetsLost
        if isinstance(self.sender, AgentSender) and self.sender.rtt is not None:
            out["rtt_ms"] = round(self.sender.rtt * 1000, 2)
        return out

    async def watch(self, on_state: Callable[[str, float], None]) -> None:
        """The iceConnectionState Chrome reports once connected, from when the last datagram
        came through a relay (libwebrtc judges a connection on ``Connection::last_received()``
        and its unanswered pings; aioice's consent checks report nothing until they give up).

        ``disconnected`` when nothing has come for :data:`ICE_DISCONNECTED_AFTER`, back to
        ``connected`` when traffic comes again. Chrome 156 in this lab reported no ``failed``
        within 69 s of a cut (docs/fidelity.md), so neither does this."""
        loop = asyncio.get_running_loop()
        state = "connected"
        while True:
            await asyncio.sleep(ICE_WATCH_INTERVAL)
            stamps = [r.transport.last_received for r in self.relays if r.transport.last_received is not None]
            if not stamps:
                continue
            idle = loop.time() - max(stamps)
            if state == "connected" and idle >= ICE_DISCONNECTED_AFTER:
                state = "disconnected"
                on_state(state, idle)
            elif state == "disconnected" and idle < ICE_DISCONNECTED_AFTER:
                state = "connected"
                on_state(state, idle)

    async def close(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
        if self.sink:
            self.sink.stop()
        for closer in (self.sender and self.sender.stop, self.receiver and self.receiver.stop,
                       self.dtls and self.dtls.stop, self.ice and self.ice.stop):
            if closer:
                try:
                    await closer()
                except Exception:  # noqa: BLE001 - closing what may never have started
                    pass
