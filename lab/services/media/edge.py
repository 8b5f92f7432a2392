"""The media edge (reference softphone.md "Peer connection").

For each call it answers the agent's offer with an ``o=AmazonConnect`` SDP (opus/48000/2
``useinbandfec=1; minptime=10``, telephone-event, ``a=silenceSupp:off - - - -``), its
relay candidates moved out of the SDP into the answer's ``candidates`` (the LilyRTC answer
carries them apart). The edge gathers with aiortc's own relay-only ICE through the lab's TURN
(the edge is a server, not the browser under test). It plays hold audio to the agent until
``accept``; then the caller leg is connected: the agent hears the caller's tone, and the
caller leg hears (and analyses) the agent's.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import sys
import time
from dataclasses import dataclass, field
from typing import Any, TextIO

from aioice import Connection
from aiortc import RTCConfiguration, RTCIceServer, RTCPeerConnection, RTCSessionDescription
from aiortc.rtcconfiguration import RTCIceTransportPolicy
from aiortc.rtcicetransport import ICE_TRANSPORT_POLICIES, connection_kwargs
from aiortc.sdp import SessionDescription, candidate_from_sdp

from lab.core import icerestart
from lab.core.audio import AGENT_TONE, CALLER_TONE, HOLD_TONE, SourceTrack, ToneSink, tone_samples
from lab.core.lightaudio import PacketTrack, PayloadSink, encoded_tone, receive_payloads


TELEPHONE_EVENT_PT = 126


@dataclass
class EdgeCall:
    call_id: str
    pc: RTCPeerConnection
    accepted: asyncio.Event = field(default_factory=asyncio.Event)
    caller_hears: ToneSink | PayloadSink | None = None     # the caller leg's ear: the agent's audio
    t_accept: float | None = None
    answer_sdp: str = ""        # the answer last sent: an ICE restart's answer is this one with new ICE lines
    restarts: int = 0
    restart_task: asyncio.Task | None = None

    def tone(self) -> float:
        return CALLER_TONE if self.accepted.is_set() else HOLD_TONE

    def mixer(self, start: int, n: int):
        # before accept: hold audio; after: the caller's voice
        return tone_samples(CALLER_TONE if self.accepted.is_set() else HOLD_TONE, start, n)


def _restarted_sdp(sdp: str, ufrag: str, pwd: str, version: int) -> str:
    """The answer to an ICE restart: the last answer with new ICE credentials and the origin's
    version bumped (RFC 3264 section 8); the DTLS role and fingerprint stay (Chrome refuses a
    changed role in a subsequent answer)."""
    out = []
    for line in sdp.split("\r\n"):
        if line.startswith("a=ice-ufrag:"):
            line = f"a=ice-ufrag:{ufrag}"
        elif line.startswith("a=ice-pwd:"):
            line = f"a=ice-pwd:{pwd}"
        elif line.startswith("o="):
            parts = line.split()
            if len(parts) >= 3 and parts[2].isdigit():
                parts[2] = str(int(parts[2]) + version)
            line = " ".join(parts)
        out.append(line)
    return "\r\n".join(out)


def _answer_sdp(sdp: str) -> tuple[str, list[dict[str, Any]]]:
    """Connect's answer shape: own origin line, silenceSupp, candidates apart."""
    lines = sdp.split("\r\n")
    out, cands, mid, index = [], [], "0", -1
    for line in lines:
        if line.startswith("m="):
            index += 1
        if line.startswith("a=mid:"):
            mid = line[6:]
        if line.startswith("a=candidate:"):
            cands.append({"candidate": line[2:], "sdpMid": mid, "sdpMLineIndex": max(index, 0)})
            continue
        if line == "a=end-of-candidates" or line.startswith("a=fmtp:"):
            continue
        if line.startswith("o="):
            line = f"o=AmazonConnect {secrets.randbits(62)} 2 IN IP4 0.0.0.0"
        out.append(line)
        if line.startswith("a=rtpmap:") and "opus/48000" in line:
            pt = line[len("a=rtpmap:"):].split()[0]
            # Connect's codec lines; telephone-event is offered though the lab never sends DTMF
            out += [f"a=fmtp:{pt} minptime=10;useinbandfec=1", f"a=rtpmap:{TELEPHONE_EVENT_PT} telephone-event/8000",
                    "a=silenceSupp:off - - - -"]
    out = [f"{ln} {TELEPHONE_EVENT_PT}" if ln.startswith("m=audio") else ln for ln in out]
    return "\r\n".join(out), cands


class MediaEdge:
    """``candidates``: ``relay`` gathers relay-only through the lab's TURN; ``host`` offers the
    edge's own addresses (a media server with a public address, as a cloud's are), so the
    agent's relay sends to it across the network and a firewall on the way can drop it."""

    def __init__(self, ice_servers: list[dict[str, Any]], log: TextIO | None = sys.stdout,
                 candidates: str = "relay"):
        self.ice_servers = ice_servers
        self.candidates = candidates
        self.calls: dict[str, EdgeCall] = {}
        self.heard: dict[str, tuple[float, float]] = {}  # what each ended call's caller heard last
        # calls on the light media path (lab/core/lightaudio.py): a load run's, registered by the cloud
        self.light: set[str] = set()
        self.log = log

    def _log(self, **event: Any) -> None:
        if self.log is not None:
            self.log.write(json.dumps({"t": round(time.time(), 4), "service": "media", **event}) + "\n")
            self.log.flush()

    def _config(self) -> RTCConfiguration:
        if self.candidates == "host":
            # an empty list, not None: None would make aiortc use a public STUN server
            return RTCConfiguration(iceServers=[])
        servers = [RTCIceServer(urls=s["urls"], username=s.get("username"), credential=s.get("credential"))
                   for s in self.ice_servers]
        return RTCConfiguration(iceServers=servers, iceTransportPolicy=RTCIceTransportPolicy.RELAY)

    async def answer(self, call_id: str, offer: str, candidates: list[dict[str, Any]]) -> dict[str, Any]:
        pc = RTCPeerConnection(self._config())
        call = EdgeCall(call_id, pc)
        self.calls[call_id] = call
        light = call_id in self.light
        pc.addTrack(PacketTrack(call.tone) if light else SourceTrack(call.mixer))

        @pc.on("track")
        def on_track(track) -> None:
            if light:
                call.caller_hears = PayloadSink((AGENT_TONE,))
                receiver = next(t.receiver for t in pc.getTransceivers() if t.receiver.track is track)
                receive_payloads(receiver, call.caller_hears)
            else:
                call.caller_hears = ToneSink(track)

        @pc.on("iceconnectionstatechange")
        def on_ice() -> None:
            self._log(event="ice", callId=call_id, state=pc.iceConnectionState)

        await pc.setRemoteDescription(RTCSessionDescription(offer, "offer"))
        for c in candidates:
            cand = candidate_from_sdp(c["candidate"].split(":", 1)[1])
            cand.sdpMid, cand.sdpMLineIndex = c.get("sdpMid", "0"), c.get("sdpMLineIndex", 0)
            await pc.addIceCandidate(cand)
        await pc.setLocalDescription(await pc.createAnswer())
        sdp, cands = _answer_sdp(pc.localDescription.sdp)
        call.answer_sdp = sdp
        self._log(event="answer", callId=call_id, candidates=len(cands))
        return {"sdp": sdp, "candidates": cands}

    async def restart(self, call_id: str, offer: str, candidates: list[dict[str, Any]],
                      timeout: float = 15.0) -> dict[str, Any]:
        """An ICE restart of the call's existing connection (connect-rtc-js
        ``IceRestartSubstate``'s invite): new local ICE credentials and a new relay-only
        gathering through the lab's TURN, checks against the offer's new credentials and
        ``candidates``; the DTLS session, its role and fingerprint, the call and its caller leg
        carry on (lab/core/icerestart.py). The answer is the call's last one with the new ICE
        lines. KeyError for a call the edge does not have; the checks run in the background,
        as a browser's do after it has answered."""
        call = self.calls[call_id]
        desc = SessionDescription.parse(offer)
        if not desc.media or desc.media[0].ice is None or not desc.media[0].ice.usernameFragment:
            raise ValueError("restart offer without ICE credentials")
        remote = desc.media[0].ice
        remote_cands = icerestart.remote_candidates(candidates)
        transceiver = call.pc.getTransceivers()[0]
        ice = transceiver.receiver.transport.transport
        config = self._config()
        conn = Connection(ice_controlling=ice._connection.ice_controlling,
                          transport_policy=ICE_TRANSPORT_POLICIES[config.iceTransportPolicy],
                          **connection_kwargs(config.iceServers or []))
        await conn.gather_candidates()
        local = [{"candidate": "candidate:" + c.to_sdp(), "sdpMid": "0", "sdpMLineIndex": 0}
                 for c in conn.local_candidates]
        if not local:
            await conn.close()
            raise ConnectionError("no relay candidate for the ICE restart")
        call.restarts += 1
        sdp = _restarted_sdp(call.answer_sdp, conn.local_username, conn.local_password, call.restarts)
        call.answer_sdp = sdp
        self._log(event="ice_restart", callId=call_id, candidates=len(local), restart=call.restarts)

        async def checks() -> None:
            try:
                await icerestart.restart(ice, conn, remote, remote_cands, timeout=timeout)
            except ConnectionError as exc:
                self._log(event="ice_restart_failed", callId=call_id, reason=str(exc))
                return
            self._log(event="ice_restarted", callId=call_id, restart=call.restarts)

        call.restart_task = asyncio.ensure_future(checks())
        return {"sdp": sdp, "candidates": local}

    def prepare_light(self) -> None:
        """Encode the light path's tones now (about 0.3 s each), not in the first light call's answer."""
        for freq in (AGENT_TONE, CALLER_TONE, HOLD_TONE):
            encoded_tone(freq)

    async def accept(self, call_id: str) -> None:
        call = self.calls.get(call_id)
        if call is not None:
            call.accepted.set()
            call.t_accept = time.monotonic()
            if call.caller_hears:
                call.caller_hears.reset()
            self._log(event="accept", callId=call_id)

    def caller_heard(self, call_id: str) -> tuple[float, float]:
        """Dominant frequency and level of the agent's audio at the caller, last second."""
        call = self.calls.get(call_id)
        if call is None or call.caller_hears is None:
            return self.heard.get(call_id, (0.0, float("-inf")))
        return call.caller_hears.heard()

    async def hangup(self, call_id: str) -> None:
        call = self.calls.pop(call_id, None)
        if call is not None:
            if call.restart_task is not None and not call.restart_task.done():
                call.restart_task.cancel()
            if call.caller_hears:
                self.heard[call_id] = call.caller_hears.heard() if call.accepted.is_set() else (0.0, float("-inf"))
                call.caller_hears.stop()
            received = await _received(call.pc)
            await call.pc.close()
            # what the caller leg heard of the agent: the far half of "audio both ways"
            hz, db = self.heard.get(call_id, (0.0, float("-inf")))
            if isinstance(call.caller_hears, PayloadSink):
                received["payloads"] = call.caller_hears.counts()
            self._log(event="hangup", callId=call_id, heard_hz=round(hz, 1),
                      heard_dbfs=None if db == float("-inf") else round(db, 1), **received)

    async def close(self) -> None:
        for call_id in list(self.calls):
            await self.hangup(call_id)


async def _received(pc: RTCPeerConnection) -> dict[str, Any]:
    """Audio packets the edge received from the agent, and how many were lost (RTP sequence
    numbers, aiortc's inbound statistics)."""
    out: dict[str, Any] = {"packets_received": 0, "packets_lost": 0}
    for receiver in pc.getReceivers():
        try:
            report = await receiver.getStats()
        except Exception:  # noqa: BLE001 - a receiver that never started has no statistics
            continue
        for s in report.values():
            if type(s).__name__ == "RTCInboundRtpStreamStats":
                out["packets_received"] += s.packetsReceived
                out["packets_lost"] += s.packetsLost
    return out
