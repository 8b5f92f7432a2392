"""Place one softphone call from a media info: the glue between the session, the
browser-faithful peer and the LilyRTC channel (what ``python -m lab.agent`` runs)."""

from __future__ import annotations

import asyncio
import json
import ssl as ssl_mod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import urlsplit

from .constants import Timers
from .peer import RelayPeer
from .persistent import PersistentOptions, PersistentSession
from .session import FAILED, Outcome, RTCSession
from .signalling import SignallingChannel
from .timeline import Timeline
from . import vdi as vdi_mod


@dataclass
class CallOptions:
    profile: str = "chrome"          # chrome | aiortc-default
    engine: str = "emulated"         # emulated (this package) | chromium (lab.agent.browser: the real library)
    pki_dir: Path | None = None      # the lab CA's folder: the chromium engine trusts the certificates in it
    talk_time: float = 3.0
    media: bool = True
    mdns: bool = False               # host candidates named <uuid>.local (lab/agent/privacy.py)
    gum_time: float = 0.0            # s the microphone takes to open (getUserMedia); the pool gathers meanwhile
    levels: float = 0.0              # s between audio level lines while talking (lab/agent/levels.py; 0: none)
    timers: Timers = field(default_factory=Timers)
    vdi: vdi_mod.VdiOptions | None = None     # under VDI: where the engine runs (lab/agent/vdi.py)
    persistent: PersistentOptions | None = None   # the CCP's persistent peer connection (lab/agent/persistent.py)


async def place_call(call_id: str, info: dict[str, Any], *, ssl: ssl_mod.SSLContext | None,
                     options: CallOptions = CallOptions(), stream: TextIO | None = None) -> Outcome:
    cfg = json.loads(info["callConfigJson"])
    tl = Timeline(stream=stream)
    tl.add("info", "call", callId=call_id, profile=options.profile, callType=info.get("callType"), mdns=options.mdns,
           iceServers=[u for s in cfg["iceServers"] for u in ([s["urls"]] if isinstance(s["urls"], str) else s["urls"])])
    channel = None
    if options.vdi is not None:
        failed = await _vdi_strategy(options.vdi, options.timers, tl)
        if failed is not None:
            return failed
        if options.vdi.mode == "redirected":
            ep = urlsplit(cfg["signalingEndpoint"])
            channel = vdi_mod.virtual_channel(options.vdi, ep.hostname, ep.port or 443)
    if options.persistent is not None:
        def leg() -> tuple[RelayPeer, SignallingChannel]:
            # the page-load set-up names no contact: no contactCtx in its URL
            sig = SignallingChannel(cfg["signalingEndpoint"], call_id, "", timeline=tl, ssl=ssl, channel=channel)
            sig.url = sig.url.split("&contactCtx=")[0]
            return (RelayPeer(cfg["iceServers"], profile=options.profile, timeline=tl, ssl=ssl, media=options.media,
                              mdns=options.mdns, gum_time=options.gum_time), sig)

        def contact_channel(contact_id: str, token: str) -> SignallingChannel:
            # an ICE restart's invite goes on a new channel named after the contact
            return SignallingChannel(cfg["signalingEndpoint"], contact_id, token, timeline=tl, ssl=ssl, channel=channel)
        return await PersistentSession(leg, call_id=call_id, call_context_token=info["callContextToken"],
                                       options=options.persistent, timeline=tl, timers=options.timers,
                                       talk_time=options.talk_time, make_channel=contact_channel).run()
    peer = RelayPeer(cfg["iceServers"], profile=options.profile, timeline=tl, ssl=ssl, media=options.media,
                     mdns=options.mdns, gum_time=options.gum_time, levels=options.levels)
    sig = SignallingChannel(cfg["signalingEndpoint"], call_id, info["callContextToken"], timeline=tl, ssl=ssl,
                            channel=channel)
    session = RTCSession(peer, sig, call_context_token=info["callContextToken"], timeline=tl,
                         timers=options.timers, talk_time=options.talk_time)
    return await session.run()


async def _vdi_strategy(opts: vdi_mod.VdiOptions, timers: Timers, tl: Timeline) -> Outcome | None:
    """The CCP's VDI strategy before any RTC session: the plug-in must be ready within
    ``timers.vdi_plugin`` (10 s) or Streams publishes vdi_redir_not_supported; an Outcome
    then, None when the call may go on."""
    tl.add("vdi", "strategy", mode=opts.mode, plugin_timeout=timers.vdi_plugin)
    if opts.mode == "in-desktop":
        return None
    try:
        if opts.mode == "redirect-unavailable":
            # no plug-in answers: the wait ends on the plug-in timer
            await asyncio.sleep(timers.vdi_plugin)
            raise vdi_mod.PluginError(f"the plug-in did not become ready within {timers.vdi_plugin:g} s")
        await vdi_mod.register_plugin(opts, timers.vdi_plugin)
    except vdi_mod.PluginError as exc:
        tl.add("error", vdi_mod.VDI_REDIR_NOT_SUPPORTED, softphone_error=vdi_mod.SOFTPHONE_ERROR,
               detail=f"{vdi_mod.NOT_SUPPORTED_MESSAGE} ({exc})", state="VDIStrategy")
        return Outcome(FAILED, None, vdi_mod.SOFTPHONE_ERROR, vdi_mod.NOT_SUPPORTED_MESSAGE,
                       timeline=tl.as_list())
    tl.add("vdi", "plugin_ready", desktop=opts.desktop, port=opts.port)
    return None
