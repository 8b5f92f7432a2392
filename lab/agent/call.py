"""Place one softphone call from a media info: the glue between the session, the
browser-faithful peer and the LilyRTC channel (what ``python -m lab.agent`` runs)."""

from __future__ import annotations

import json
import ssl as ssl_mod
from dataclasses import dataclass, field
from typing import Any, TextIO

from .constants import Timers
from .peer import RelayPeer
from .session import Outcome, RTCSession
from .signalling import SignallingChannel
from .timeline import Timeline


@dataclass
class CallOptions:
    profile: str = "chrome"          # chrome | aiortc-default
    talk_time: float = 3.0
    media: bool = True
    mdns: bool = False               # host candidates named <uuid>.local (lab/agent/privacy.py)
    timers: Timers = field(default_factory=Timers)


async def place_call(call_id: str, info: dict[str, Any], *, ssl: ssl_mod.SSLContext | None,
                     options: CallOptions = CallOptions(), stream: TextIO | None = None) -> Outcome:
    cfg = json.loads(info["callConfigJson"])
    tl = Timeline(stream=stream)
    tl.add("info", "call", callId=call_id, profile=options.profile, callType=info.get("callType"), mdns=options.mdns,
           iceServers=[u for s in cfg["iceServers"] for u in ([s["urls"]] if isinstance(s["urls"], str) else s["urls"])])
    peer = RelayPeer(cfg["iceServers"], profile=options.profile, timeline=tl, ssl=ssl, media=options.media,
                     mdns=options.mdns)
    sig = SignallingChannel(cfg["signalingEndpoint"], call_id, info["callContextToken"], timeline=tl, ssl=ssl)
    session = RTCSession(peer, sig, call_context_token=info["callContextToken"], timeline=tl,
                         timers=options.timers, talk_time=options.talk_time)
    return await session.run()
