"""The agent's peer connection as the session sees it: relay-only gathering with the chosen
ICE profile, an audio-only offer shaped like the softphone's (no candidate lines; candidates
travel in the invite), and the remote description and candidates kept for media.

Media starts when the remote candidates are all in (AcceptState), in the background, as
in the browser: TalkingState does not wait for ICE checks or DTLS. ``talk`` then measures
what flowed; with ``media=False`` (signalling-only labs) it reports ``audio: not_emulated``.
"""

from __future__ import annotations

import asyncio
import secrets
import ssl as ssl_mod
from typing import Any, Callable

from .constants import DEFAULT_ICE_CANDIDATE_POOL_SIZE
from .gather import Relay, RelayGatherer
from . import levels
from .media import AgentMedia
from .privacy import HostNames, host_candidate, signalled
from .timeline import Timeline
from .turnclient import TurnURL


SILENCE_DBFS = -40.0  # below this the received audio counts as silence
JITTER_SAMPLE = 0.1   # s between jitter samples while talking


def offer_sdp(ufrag: str, pwd: str, session_id: int | None = None, fingerprint: str | None = None) -> str:
    """An audio-only offer as connect-rtc-js sends it after its rewrites (opus ``usedtx=0``,
    ``minptime=20``, ``a=ptime:20``, ``a=maxptime:20``), without candidate lines."""
    sid = session_id or secrets.randbits(62)
    return "\r\n".join([
        "v=0", f"o=- {sid} 2 IN IP4 127.0.0.1", "s=-", "t=0 0", "a=group:BUNDLE 0",
        "a=msid-semantic: WMS", "m=audio 9 UDP/TLS/RTP/SAVPF 111 126", "c=IN IP4 0.0.0.0",
        "a=rtcp:9 IN IP4 0.0.0.0", f"a=ice-ufrag:{ufrag}", f"a=ice-pwd:{pwd}", "a=ice-options:trickle",
        *([f"a=fingerprint:{fingerprint}"] if fingerprint else []),
        "a=setup:actpass", "a=mid:0", "a=sendrecv", "a=rtcp-mux",
        "a=rtpmap:111 opus/48000/2", "a=fmtp:111 minptime=20;useinbandfec=1;usedtx=0",
        "a=rtpmap:126 telephone-event/8000", "a=ptime:20", "a=maxptime:20", ""])


class RelayPeer:
    def __init__(self, ice_servers: list[dict[str, Any]], *, profile: str = "chrome",
                 timeline: Timeline, ssl: ssl_mod.SSLContext | None = None, media: bool = True,
                 mdns: bool = False, candidate_pool: int = DEFAULT_ICE_CANDIDATE_POOL_SIZE,
                 gum_time: float = 0.0, levels: float = 0.0):
        self.ice_servers = ice_servers
        self.host_names = HostNames(obfuscate=mdns)
        self._hosts: set[tuple[str, int]] = set()
        self.profile = profile
        self.timeline = timeline
        self.ssl = ssl
        self.ufrag = secrets.token_hex(2)
        self.pwd = secrets.token_hex(12)
        self.gatherer: RelayGatherer | None = None
        self.remote_sdp: str | None = None
        self.remote_candidates: list[dict[str, Any]] = []
        self.media = AgentMedia() if media else None
        self.candidate_pool = candidate_pool
        self.gum_time = gum_time
        self.levels = levels        # s between audio level reports while talking (0: none)
        self._meters: asyncio.Task | None = None
        self._sink: tuple[Callable[[dict[str, Any]], None], Callable[[], None]] | None = None
        self._held: list[Relay] = []
        self._complete = False
        self._media_task: asyncio.Task | None = None
        self._restart_gatherer: RelayGatherer | None = None

    async def get_user_media(self) -> None:
        # the lab's microphone is a generated signal: always granted, after ``gum_time`` (a
        # real device, or Chromium's fake one, takes a while; the candidate pool gathers meanwhile)
        if self.gum_time > 0:
            await asyncio.sleep(self.gum_time)

    async def create_offer(self) -> str:
        if self.media is not None:
            return offer_sdp(self.media.ufrag, self.media.pwd, fingerprint=self.media.fingerprint())
        return offer_sdp(self.ufrag, self.pwd)

    async def set_local_description(self, sdp: str) -> None:
        self.local_sdp = sdp

    def create_peer_connection(self) -> None:
        """``new RTCPeerConnection(config)`` in ``RTCSession.connect()``, before
        GrabLocalMediaState. With ``iceCandidatePoolSize: 1`` (rtc_session.js sets
        DEFAULT_ICE_CANDIDATE_POOL_SIZE) Chrome starts allocating at once (libwebrtc
        ``PortAllocator::SetConfiguration``, p2p/base/port_allocator.cc, creates the pooled
        session and calls its ``StartGettingPorts()``), so gathering begins here, before the ICE state and its 8 s
        timer. What the pool gathers is held until the local description is set, then handed
        over (PortAllocator::TakePooledSession): :meth:`start_gathering`."""
        self.timeline.add("info", "peer-connection", iceCandidatePoolSize=self.candidate_pool)
        if self.candidate_pool > 0:
            self._start(pooled=True)

    def start_gathering(self, on_candidate: Callable[[dict[str, Any]], None],
                        on_complete: Callable[[], None]) -> None:
        """The session's ICE state listens from now on; what the pool already has comes at once."""
        self._sink = (on_candidate, on_complete)
        if self.gatherer is None:
            self._start(pooled=False)
            return
        for relay in self._held:
            self._deliver(relay)
        self._held.clear()
        if self._complete:
            on_complete()

    def _deliver(self, relay: Relay) -> None:
        self._host_of(relay)
        self._sink[0]({"candidate": "candidate:" + signalled(relay.candidate).to_sdp(), "sdpMid": "0",
                       "sdpMLineIndex": 0, "url": relay.url.label})

    def _start(self, pooled: bool) -> None:
        tl = self.timeline

        def candidate(relay: Relay) -> None:
            if self._sink is None:          # the pool's, before the local description
                tl.add("ice", "pooled", url=relay.url.label, elapsed=round(relay.elapsed, 4))
                self._held.append(relay)
            else:
                self._deliver(relay)

        def on_complete() -> None:
            self._complete = True
            if self._sink is not None:
                self._sink[1]()

        def error(url: TurnURL, reason: str) -> None:
            tl.add("ice", "url_failed", url=url.label, reason=reason)

        def sent(url: TurnURL, method: str, attempt: int) -> None:
            tl.add("stun", f"send {method}", url=url.label, attempt=attempt)

        def ignored(url: TurnURL, method: str, code: int) -> None:
            tl.add("stun", f"ignored {method} error", url=url.label, code=code,
                   why="an error other than 401 before authentication: Chrome retransmits")

        tl.add("ice", "gathering", profile=self.profile, pool=pooled)
        self.gatherer = RelayGatherer(self.ice_servers, self.profile, ssl=self.ssl, on_candidate=candidate,
                                      on_error=error, on_send=sent, on_ignored=ignored,
                                      on_complete=on_complete)
        self.gatherer.start()

    def _host_of(self, relay: Relay) -> None:
        """The host candidate under a relay (its allocation's socket): gathered inside the
        browser, named by mDNS if asked, never signalled (lab/agent/privacy.py)."""
        sock = getattr(getattr(relay.transport.client, "transport", None), "get_extra_info", None)
        base = sock("sockname") if sock else None
        if not base or tuple(base[:2]) in self._hosts:
            return
        self._hosts.add(tuple(base[:2]))
        c = host_candidate(self.host_names, tuple(base[:2]), "tcp" if relay.url.transport == "tcp" else "udp")
        self.timeline.add("candidate", "host", candidate="candidate:" + c.to_sdp(), sent=False,
                          why="iceTransportPolicy relay: only relay candidates are signalled",
                          mdns=self.host_names.obfuscate)

    async def set_remote_description(self, sdp: str) -> None:
        if "m=audio" not in sdp:
            raise ValueError("remote description has no audio m-line")
        self.remote_sdp = sdp

    async def add_ice_candidate(self, candidate: dict[str, Any] | None) -> None:
        if candidate is not None:
            self.remote_candidates.append(candidate)
        elif self.media is not None and self._media_task is None:
            relays = list(self.gatherer.result.relays) if self.gatherer else []
            self._media_task = asyncio.ensure_future(self._start_media(relays))

    async def _start_media(self, relays: list[Relay]) -> None:
        tl = self.timeline
        tl.add("media", "ice_checking", local=len(relays), remote=len(self.remote_candidates))
        tl.add("ice", "checking")       # iceConnectionState, as the browser reports it
        try:
            await self.media.start(relays, self.remote_sdp or "", self.remote_candidates,
                                   on_event=lambda name: tl.add("media", name),
                                   on_ice_state=lambda state, idle: tl.add(
                                       "ice", state, since_last_received=round(idle, 3)))
        except Exception as exc:  # noqa: BLE001 - a broken path is silent audio, not a session error
            tl.add("media", "failed", reason=f"{type(exc).__name__}: {exc}")
            return
        tl.add("media", "connected", ice=self.media.ice_state)

    async def talk(self, duration: float) -> dict[str, Any]:
        if self.media is None:
            await asyncio.sleep(duration)
            return {"audio": "not_emulated"}
        # RFC 3550 jitter is a running estimate that forgets a burst within a second or so:
        # sample it while talking so that the call's worst moment is kept too
        loop = asyncio.get_running_loop()
        end = loop.time() + duration
        worst = None
        if self.levels > 0:
            self._meters = asyncio.ensure_future(
                levels.report(self.media, lambda data: self.timeline.report("level", data), self.levels))
        while (left := end - loop.time()) > 0:
            await asyncio.sleep(min(JITTER_SAMPLE, left))
            j = (await self.media.stats()).get("jitter_ms")
            if j is not None:
                worst = j if worst is None else max(worst, j)
        if self._meters is not None:
            self._meters.cancel()
        q = await self.media.stats()
        q["jitter_max_ms"] = worst
        freq, level = self.media.sink.heard() if self.media.sink else (0.0, float("-inf"))
        q["heard_hz"] = round(freq, 1)
        q["heard_dbfs"] = round(level, 1) if level != float("-inf") else None
        q["ice_state"] = self.media.ice_state
        # the relay that carried the call: checks touch every pair, the media only the selected one
        relays = self.media.relays
        if relays and any(r.transport.packets_sent for r in relays):
            used = max(relays, key=lambda r: r.transport.packets_sent)
            q["relay"] = used.url.label
            q["relay_transport"] = "tls" if used.url.secure else used.url.transport
        # what the real softphone would not notice: Talking, but nothing (audible) arrives
        q["silent_audio"] = q["packets_received"] == 0 or level < SILENCE_DBFS
        return q

    # -- an ICE restart on this peer connection (connect-rtc-js IceRestartSubstate and after)

    async def restart_offer(self, ice_servers: list[dict[str, Any]]) -> str:
        """``setConfiguration`` with the new iceServers, then ``createOffer({iceRestart: true})``:
        new ICE credentials, the same DTLS fingerprint."""
        self.ice_servers = ice_servers
        if self.media is None:
            self.ufrag, self.pwd = secrets.token_hex(2), secrets.token_hex(12)
        else:
            self.media.new_credentials()
        return await self.create_offer()

    def restart_gathering(self, on_candidate: Callable[[dict[str, Any]], None],
                          on_complete: Callable[[], None]) -> None:
        """A new relay-only gathering for the restart (Chrome gathers anew with the new
        credentials); candidates reach the callbacks as they come."""
        tl = self.timeline
        if self._restart_gatherer is not None:     # an earlier restart's, never used
            asyncio.ensure_future(self._restart_gatherer.close())

        def candidate(relay: Relay) -> None:
            self._host_of(relay)
            on_candidate({"candidate": "candidate:" + signalled(relay.candidate).to_sdp(), "sdpMid": "0",
                          "sdpMLineIndex": 0, "url": relay.url.label})

        def error(url: TurnURL, reason: str) -> None:
            tl.add("ice", "url_failed", url=url.label, reason=reason, restart=True)

        tl.add("ice", "gathering", profile=self.profile, pool=False, restart=True)
        self._restart_gatherer = RelayGatherer(self.ice_servers, self.profile, ssl=self.ssl, on_candidate=candidate,
                                               on_error=error, on_complete=on_complete)
        self._restart_gatherer.start()

    async def restart_media(self, answer_sdp: str, remote_candidates: list[dict[str, Any]],
                            timeout: float | None = None) -> None:
        """The answer's credentials and candidates: checks from the restart's relays, then
        the media on them (ConnectionError when no pair works: the old path is kept)."""
        new = self._restart_gatherer
        if self.media is None or new is None:
            raise ConnectionError("no media to restart")
        relays = list(new.result.relays)
        await self.media.restart(relays, answer_sdp, remote_candidates, timeout=timeout)
        old, self.gatherer = self.gatherer, new
        self._restart_gatherer = None
        if old is not None:
            await old.close()

    async def close(self) -> None:
        if self._restart_gatherer is not None:
            await self._restart_gatherer.close()
        if self._meters is not None:        # a talk cut short by the far end's bye
            self._meters.cancel()
        if self._media_task is not None and not self._media_task.done():
            self._media_task.cancel()
        if self.media is not None:
            await self.media.close()
        if self.gatherer is not None:
            await self.gatherer.close()
