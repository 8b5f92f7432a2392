"""The softphone's light media for load runs (``media: light``): the same ICE, DTLS, SRTP, RTP
and RTCP as :class:`lab.agent.media.AgentMedia`, but the agent's tone goes out as Opus frames
encoded once (:mod:`lab.core.lightaudio`) and what arrives is recognised by its payloads, not
decoded. A call then costs the network path and aiortc's packet handling, not a codec.

The session, the gatherer and the peer are the full path's: only the media object differs."""

from __future__ import annotations

import json
import ssl as ssl_mod
from typing import Any, TextIO

from lab.core.audio import AGENT_TONE, CALLER_TONE, HOLD_TONE
from lab.core.lightaudio import PayloadSink, receive_payloads, tone_packets

from .call import CallOptions
from .media import AgentMedia
from .peer import RelayPeer
from .session import Outcome, RTCSession
from .signalling import SignallingChannel
from .timeline import Timeline


class LightAgentMedia(AgentMedia):
    def __init__(self, freq: float = AGENT_TONE):
        super().__init__(freq)
        self.track = tone_packets(freq)
        self.payloads = PayloadSink((CALLER_TONE, HOLD_TONE))

    async def start(self, *args: Any, **kw: Any) -> None:
        await super().start(*args, **kw)
        # no await between the receiver's start and here: no packet reached the decoder
        self.sink.stop()
        receive_payloads(self.receiver, self.payloads)
        self.receiver._RTCRtpReceiver__decoder_queue.put(None)   # its decoder thread has nothing to do
        self.sink = self.payloads

    async def stats(self) -> dict[str, Any]:
        out = await super().stats()
        out["payloads"] = self.payloads.counts()
        return out


async def place_light_call(call_id: str, info: dict[str, Any], *, ssl: ssl_mod.SSLContext | None,
                           options: CallOptions = CallOptions(), stream: TextIO | None = None) -> Outcome:
    """:func:`lab.agent.call.place_call` with the light media (no VDI: load runs place calls
    from agent hosts)."""
    cfg = json.loads(info["callConfigJson"])
    tl = Timeline(stream=stream)
    tl.add("info", "call", callId=call_id, profile=options.profile, callType=info.get("callType"),
           mdns=options.mdns, media="light",
           iceServers=[u for s in cfg["iceServers"] for u in ([s["urls"]] if isinstance(s["urls"], str) else s["urls"])])
    peer = RelayPeer(cfg["iceServers"], profile=options.profile, timeline=tl, ssl=ssl, media=False,
                     mdns=options.mdns, gum_time=options.gum_time)
    peer.media = LightAgentMedia()
    sig = SignallingChannel(cfg["signalingEndpoint"], call_id, info["callContextToken"], timeline=tl, ssl=ssl)
    session = RTCSession(peer, sig, call_context_token=info["callContextToken"], timeline=tl,
                         timers=options.timers, talk_time=options.talk_time)
    return await session.run()
