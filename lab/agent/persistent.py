"""The CCP's persistent peer connection (connect-rtc-js 1.3.2 ``RtcPeerConnectionManager``):
one peer connection and its TURN allocation, set up at page load and kept between calls.

What the library does (bundle module 34 ``rtc_peer_connection_manager``, 36 ``rtc_session``,
37 the TalkingState substates, 43 ``signaling``; docs/persistent.md has the lines):

- set-up: ``activatePersistentPeerConnectionMode()`` asks for ICE servers, creates the peer
  connection and runs an RTCSession through the normal path with no contact token; its
  ``invite`` carries ``persistentConnection: true``. ``AcceptState._checkAndTransit`` then goes
  to DisconnectedState and the manager keeps the peer connection, the answer's
  ``peerConnectionId``/``peerConnectionToken`` and the LilyRTC channel.
- a call: ``RTCSession.connect(pc)`` with the manager's channel goes to ``ConnectContactState``,
  which sends ``connectContact`` and enters TalkingState at once: no getUserMedia wait, no
  gathering, no invite, no 8 s ICE timer. Hang-up sends ``disconnectContact``, not ``bye``.
- between calls the local track is only paused (``CleanUpState``: ``pauseLocalAudio``), so the
  browser keeps sending RTP (silence) and its ICE checks: the NAT mapping is never idle.
- ICE restart: only in TalkingState's ``ConnectedSubstate``, when ICE *changes* to
  ``disconnected`` and is still so 3 s later (``retryInterval`` 3000), and only with a
  ``peerConnectionToken``; or when the server answers ``Stale Peer Connection`` (400).
  Between calls no session watches ICE, and the health check runs only when a call ends.
  The restart (``IceRestartSubstate`` .. ``AcceptSubstate``) is emulated on the kept
  connection: new ICE credentials and gathering, the invite on a new channel, the answer, the
  checks on the same DTLS session (:meth:`PersistentSession._ice_restart`).
- the channel's inactivity timer (the answer's ``inactivityDuration``) destroys an idle
  persistent connection; the next call then starts from scratch.

Chrome's refreshes of the idle TURN allocation (libwebrtc ``turn_port.cc``; the emulated
TURN client keeps its schedule, ``lab.agent.turnclient.CHROME_TURN``) happen far later than
RTP and consent traffic, so they do not decide whether a NAT keeps the mapping.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any, Callable

from websockets.exceptions import ConnectionClosed

from . import errors
from .constants import Timers
from .errors import RTCError
from .session import DISCONNECTED, FAILED, INVITE_ANSWER, TALKING, Outcome, RTCSession
from .signalling import RPCError, invite_request
from .timeline import Timeline

#: connect-rtc-js 1.3.2 ``src/rtc_session_talking_substates.js:27`` (``ConnectedSubstate.retryInterval``)
ICE_RESTART_AFTER = 3.0
#: ``InviteAnswerSubstate`` (``:293`` ``maxRetries``, ``:300`` ``retryInterval``): an attempt and 3 more, 1 s apart
INVITE_RESTART_RETRIES = 3
INVITE_RESTART_RETRY_INTERVAL = 1.0
#: how long the emulated browser's restart checks may take before the old path is kept (the
#: library does not wait for them; Chrome's own give-up is ICE ``failed``, not reached here)
RESTART_CHECKS_TIMEOUT = 20.0
CONNECTED_SUBSTATE = "ConnectedSubstate"


@dataclass(frozen=True)
class PersistentOptions:
    """A session option: keep the peer connection between ``calls`` calls, ``idle`` seconds
    apart (``settle``: seconds between the set-up and the first call)."""

    calls: int = 2
    idle: float = 20.0
    settle: float = 0.0

    def __post_init__(self) -> None:
        if self.calls < 1:
            raise ValueError("persistent.calls must be at least 1")
        if self.idle < 0 or self.settle < 0:
            raise ValueError("persistent.idle and persistent.settle must be >= 0 seconds")

    @classmethod
    def from_dict(cls, doc: dict) -> "PersistentOptions":
        unknown = set(doc) - {"calls", "idle", "settle"}
        if unknown:
            raise ValueError(f"persistent.{sorted(unknown)[0]}: unknown (known: calls, idle, settle)")
        return cls(calls=int(doc.get("calls", 2)), idle=float(doc.get("idle", 20.0)),
                   settle=float(doc.get("settle", 0.0)))

    def as_dict(self) -> dict:
        return {"calls": self.calls, "idle": self.idle, "settle": self.settle}


# -- the emulation ----------------------------------------------------------------------------

SETUP = "persistent set-up"
CONNECT_CONTACT = "ConnectContactState"


def persistent_invite_params(sdp: str, candidates: list[dict[str, Any]], call_id: str,
                             token: str | None, pc_id: str | None, pc_token: str | None,
                             ice_restart: bool = False) -> dict[str, Any]:
    """The ``invite`` params of a manager's session (module 43 ``PendingInviteState``): the
    plain ones plus the persistent connection's."""
    return {"sdp": sdp, "candidates": candidates, "callContextToken": token, "contactId": call_id,
            "browserId": BROWSER_ID, "persistentConnection": True, "peerConnectionId": pc_id,
            "iceRestart": ice_restart, "peerConnectionToken": pc_token}


BROWSER_ID = "icelab-browser"


class _SetupSession(RTCSession):
    """The page-load session: the normal path to AcceptState with no contact token; then
    DisconnectedState, the peer connection and the channel kept (``AcceptState._checkAndTransit``:
    ``_pcm && !_contactToken`` -> DisconnectedState)."""

    def __init__(self, *a: Any, call_id: str, **kw: Any):
        super().__init__(*a, **kw)
        self.call_id = call_id
        self.answer: dict[str, Any] = {}

    async def _invite_answer(self, offer: str) -> dict[str, Any]:
        self._enter(INVITE_ANSWER)
        wire = [{k: c[k] for k in ("candidate", "sdpMid", "sdpMLineIndex") if k in c} for c in self.candidates]
        params = persistent_invite_params(offer, wire, self.call_id, None, None, None)
        answer = await invite_request(self.signalling, params, self.timers.invite)
        if not answer.get("sdp"):
            raise RTCError(errors.INVALID_REMOTE_SDP, "answer without SDP")
        remote = answer.get("candidates") or []
        if not remote:
            raise RTCError(errors.NO_REMOTE_ICE_CANDIDATE, "answer without candidates")
        self.remote_candidates = list(remote)
        self.answer = answer
        return answer

    async def setup(self) -> Outcome | None:
        """Run to AcceptState; None when the persistent connection is up, else the failure."""
        try:
            await self._connect_to_accept()
        except RTCError as exc:
            sp = errors.softphone_error_type(exc.name)
            self.timeline.add("error", exc.name, softphone_error=sp, detail=exc.detail, state=self.state)
            self._enter(FAILED, rtc_error=exc.name)
            return Outcome(FAILED, exc.name, sp, exc.detail)
        self._enter(DISCONNECTED, reason=SETUP)
        return None


class PersistentSession:
    """The CCP with a persistent peer connection: set up once, then ``options.calls`` calls on
    it, ``options.idle`` seconds apart (what rtc_peer_connection_manager.js does; the module
    docstring says which lines). Returns the last call's Outcome; every call's quality is in
    the timeline (``quality`` events with ``call``)."""

    def __init__(self, make_leg: Callable[[], tuple[Any, Any]], *, call_id: str, call_context_token: str,
                 options: PersistentOptions, timeline: Timeline, timers: Timers = Timers(),
                 talk_time: float = 3.0, make_channel: Callable[[str, str], Any] | None = None):
        self.make_leg = make_leg        # () -> (peer, signalling channel) of a fresh peer connection
        # (contact id, contact token) -> a new signalling channel (RTCSession._createSignalingChannel)
        self.make_channel = make_channel
        self.substate: str | None = None
        self._restarting: asyncio.Task | None = None
        self._old_channels: list[Any] = []
        self.call_id = call_id
        self.token = call_context_token
        self.options = options
        self.timeline = timeline
        self.timers = timers
        self.talk_time = talk_time
        self.peer: Any = None
        self.signalling: Any = None
        self.answer: dict[str, Any] = {}
        self.candidates = 0

    def ice_state(self) -> str:
        """The peer connection's iceConnectionState, as last reported."""
        for e in reversed(self.timeline.as_list()):
            if e["kind"] == "ice" and e["name"] in ("checking", "connected", "disconnected", "failed"):
                return e["name"]
        return "new"

    async def _setup(self) -> Outcome | None:
        self.peer, self.signalling = self.make_leg()
        setup = _SetupSession(self.peer, self.signalling, call_context_token="", call_id=self.call_id,
                              timeline=self.timeline, timers=self.timers, talk_time=self.talk_time)
        failed = await setup.setup()
        self.answer = setup.answer
        self.candidates = len(setup.candidates)
        if failed is None:
            self.timeline.add("persistent", "ready", ice=self.ice_state(),
                              peerConnectionId=self.answer.get("peerConnectionId"))
        return failed

    async def _teardown(self, why: str) -> None:
        """``RtcPeerConnectionManager.destroy()``: bye, the peer connection closed."""
        self.timeline.add("persistent", "destroyed", reason=why)
        try:
            await self.signalling.bye("", self.timers.accept_bye)
        except Exception:  # noqa: BLE001 - the channel may be gone with the path
            pass
        for closer in (self.peer.close, self.signalling.close):
            try:
                await asyncio.wait_for(closer(), 3)
            except Exception as exc:  # noqa: BLE001
                self.timeline.add("info", "cleanup_error", detail=f"{type(exc).__name__}: {exc}")
        self.peer = self.signalling = None

    async def _contact(self, k: int) -> dict[str, Any]:
        """One call on the kept peer connection: ConnectContactState sends connectContact and
        enters TalkingState at once (no wait for its answer)."""
        tl = self.timeline
        tl.add("persistent", "call", call=k, reused=True, ice=self.ice_state())
        tl.add("state", CONNECT_CONTACT)
        contact_id = f"{self.call_id}-{k}"
        params = {"contactId": contact_id, "persistentConnection": True,
                  "peerConnectionId": self.answer.get("peerConnectionId"),
                  "peerConnectionToken": self.answer.get("peerConnectionToken"), "callContextToken": self.token}
        ack = asyncio.ensure_future(self._request("connectContact", params))
        tl.add("state", TALKING)
        watcher = asyncio.ensure_future(self._watch_ice_restart(k))
        start = await self._stats()
        q = await self.peer.talk(self.talk_time)
        watcher.cancel()
        if self._restarting is not None:
            self._restarting.cancel()
            self._restarting = None
        for key in ("packets_sent", "packets_received", "packets_lost"):
            if key in q and key in start:
                q[key] -= start[key]
        if "packets_received" in q:
            # this call's packets, not the connection's since the set-up
            q["silent_audio"] = q["packets_received"] == 0 or bool(q.get("silent_audio"))
        tl.add("quality", "summary", call=k, **q)
        # TalkingState.hangup() with a manager: disconnectContact, not bye
        await self._request("disconnectContact", {"contactId": contact_id,
                                                  "peerConnectionId": self.answer.get("peerConnectionId"),
                                                  "peerConnectionToken": self.answer.get("peerConnectionToken")})
        ack.cancel()
        tl.add("state", DISCONNECTED)
        return q

    def _ice_changed_at(self) -> float:
        """When the iceConnectionState last changed (the timeline's clock)."""
        for e in reversed(self.timeline.as_list()):
            if e["kind"] == "ice" and e["name"] in ("checking", "connected", "disconnected", "failed"):
                return e["t"]
        return self.timeline.now()

    async def _stats(self) -> dict[str, Any]:
        """The kept connection's packet counters (since the set-up)."""
        media = getattr(self.peer, "media", None) if self.peer is not None else None
        return await media.stats() if media is not None else {}

    async def _request(self, method: str, params: dict[str, Any]) -> None:
        """A request on the kept channel; a channel the path broke is opened again first
        (signaling.js ``channelDown`` -> ``_reconnect``)."""
        for attempt in range(2):
            try:
                await self.signalling.request(method, params, self.timers.accept_bye)
                return
            except (ConnectionError, OSError, ConnectionClosed) as exc:
                self.timeline.add("signalling", "reconnecting", reason=f"{type(exc).__name__}: {exc}")
                try:
                    await self.signalling.close()
                    await self.signalling.connect(self.timers.connect, self.timers.connect_max_retries)
                except Exception as exc2:  # noqa: BLE001
                    self.timeline.add("signalling", "reconnect_failed", reason=str(exc2))
                    return
            except (asyncio.TimeoutError, RPCError) as exc:
                self.timeline.add("signalling", f"{method} unanswered", reason=str(exc) or type(exc).__name__)
                return

    def _substate(self, name: str, k: int, **data: Any) -> None:
        """``TalkingState.setSubState`` ("Substate: A => B" in the library's log)."""
        self.timeline.add("substate", name, call=k, **{"from": self.substate}, **data)
        self.substate = name

    async def _watch_ice_restart(self, k: int) -> None:
        """``ConnectedSubstate.onIceStateChange``: a *change* to disconnected during the call,
        still disconnected ICE_RESTART_AFTER later, starts an ICE restart (with a
        peerConnectionToken: the manager always has one). A connection that was already
        disconnected when the call began never changes, so never restarts. After a restart,
        succeeded or not, ConnectedSubstate watches again."""
        self.substate = None
        self._substate(CONNECTED_SUBSTATE, k)
        last = self.ice_state()
        while True:
            await asyncio.sleep(0.1)
            now = self.ice_state()
            if now != last and now == "disconnected":
                self.timeline.add("info", "library", call=k,
                                  message="Detected Lost ICE connection, pending IceRestart")
                # the library's timer starts at the state change, not at this poll
                since = self.timeline.now() - self._ice_changed_at()
                await asyncio.sleep(max(0.0, ICE_RESTART_AFTER - since))
                if self.ice_state() == "disconnected":
                    self.timeline.add("info", "library", call=k, message="Trying to restart ICE connection")
                    await self._ice_restart(k)
                    now = self.ice_state()
                else:
                    self.timeline.add("info", "library", call=k, message="The network recovered, IceRestart cancelled")
                    now = self.ice_state()
            last = now

    async def _ice_restart(self, k: int) -> None:
        """IceRestartSubstate -> SetLocalSessionDescriptionSubstate ->
        ConnectSignalingAndIceCollectionSubstate -> InviteAnswerSubstate -> AcceptSubstate ->
        ConnectedSubstate (``src/rtc_session_talking_substates.js``); any failure goes back to
        ConnectedSubstate with no softphone error. Timeline: each substate, then ``ice-restart
        completed`` or ``ice-restart failed`` (with why), and ``media audio-back`` when audio
        comes again."""
        tl = self.timeline
        t0 = asyncio.get_running_loop().time()

        def failed(why: str, message: str) -> None:
            tl.add("info", "library", call=k, message=message)
            self._substate(CONNECTED_SUBSTATE, k)
            tl.add("ice-restart", "failed", call=k, reason=why,
                   after=round(asyncio.get_running_loop().time() - t0, 3))

        self._substate("IceRestartSubstate", k)
        try:
            # _requestIceAccess(): new iceServers (the lab hands out the call's own again)
            servers = getattr(self.peer, "ice_servers", None)
            offer = await self.peer.restart_offer(servers)
        except Exception as exc:  # noqa: BLE001 - the library catches everything here
            return failed("offer", f"ICE restart failed {type(exc).__name__}: {exc}")
        tl.add("info", "library", call=k, message="ICE restart offer created and set as local description")
        self._substate("SetLocalSessionDescriptionSubstate", k)
        self._substate("ConnectSignalingAndIceCollectionSubstate", k)
        candidates = await self._restart_collection(k)
        if not candidates:
            return failed("no ICE candidate", "No ICE candidate")
        self._substate("InviteAnswerSubstate", k, candidates=len(candidates))
        answer = await self._restart_invite(k, offer, candidates)
        if answer is None:
            return failed("invite", "Max invite attempts reached. Returning to ConnectedSubstate.")
        if isinstance(answer, str):
            return failed(answer, "invite refused: " + answer)
        self.answer = {**self.answer, **{key: answer[key] for key in ("peerConnectionId", "peerConnectionToken",
                                                                       "inactivityDuration") if answer.get(key)}}
        self._substate("AcceptSubstate", k)
        remote = answer.get("candidates") or []
        if not answer.get("sdp") or not remote:
            return failed("answer", "Invalid remote SDP" if not answer.get("sdp") else "No remote ICE candidate")
        # setRemoteDescription and addIceCandidate; the checks then run on their own, as in
        # the browser: the library goes back to ConnectedSubstate without waiting for them
        restart = getattr(self.peer, "restart_media", None)
        if restart is not None:
            self._restarting = asyncio.ensure_future(self._restart_media(k, restart, answer["sdp"], remote, t0))
        self._substate(CONNECTED_SUBSTATE, k)
        tl.add("ice-restart", "completed", call=k, after=round(asyncio.get_running_loop().time() - t0, 3))

    async def _restart_collection(self, k: int) -> list[dict[str, Any]]:
        """``ConnectSignalingAndIceCollectionSubstate``: the new gathering, ended by the first
        relay candidate (one m-line), end-of-candidates or the ICE timer (8 s)."""
        loop = asyncio.get_running_loop()
        done = loop.create_future()
        got: list[dict[str, Any]] = []

        def on_candidate(c: dict[str, Any]) -> None:
            if done.done():
                return
            got.append(c)
            self.timeline.add("candidate", "relay", candidate=c["candidate"], url=c.get("url"), restart=True)
            done.set_result("sufficient")

        def on_complete() -> None:
            if not done.done():
                done.set_result("end_of_candidates")

        gather = getattr(self.peer, "restart_gathering", None)
        if gather is None:
            on_complete()
        else:
            gather(on_candidate, on_complete)
        try:
            reason = await asyncio.wait_for(asyncio.shield(done), self.timers.ice)
        except asyncio.TimeoutError:
            reason = "timeout"
            self.timeline.add("info", "library", call=k, message="ICE collection timed out")
        self.timeline.add("ice", "collection_complete", reason=reason, candidates=len(got), restart=True)
        return got

    async def _restart_invite(self, k: int, offer: str, candidates: list[dict[str, Any]]) -> dict[str, Any] | str | None:
        """``InviteAnswerSubstate``: each attempt on a new channel named after the contact, an
        invite with ``iceRestart: true``, up to INVITE_RESTART_RETRIES more attempts
        INVITE_RESTART_RETRY_INTERVAL apart; Busy and CallNotFound end it at once. The answer,
        the name of a refusal, or None when every attempt failed."""
        wire = [{key: c[key] for key in ("candidate", "sdpMid", "sdpMLineIndex") if key in c} for c in candidates]
        for attempt in range(INVITE_RESTART_RETRIES + 1):
            if attempt:
                self.timeline.add("info", "library", call=k,
                                  message=f"Retrying invite in {INVITE_RESTART_RETRY_INTERVAL:g} seconds. Attempt {attempt}")
                await asyncio.sleep(INVITE_RESTART_RETRY_INTERVAL)
            channel = self.make_channel(f"{self.call_id}-{k}", self.token) if self.make_channel else None
            if channel is None:
                return None
            self._old_channels.append(channel)      # closed at the end whatever happens
            params = persistent_invite_params(offer, wire, f"{self.call_id}-{k}", self.token,
                                              self.answer.get("peerConnectionId"),
                                              self.answer.get("peerConnectionToken"), ice_restart=True)
            try:
                # the CCP's shared WebSocket is open already; the lab's channel opens first,
                # within the invite's own timer
                await asyncio.wait_for(channel.connect(self.timers.invite, 1), self.timers.invite)
                answer = await invite_request(channel, params, self.timers.invite)
            except RTCError as exc:
                await self._close_quietly(channel)
                self.timeline.add("signalling", "invite failed", call=k, rtc_error=exc.name, detail=exc.detail,
                                  restart=True)
                if exc.name in (errors.USER_BUSY, errors.CALL_NOT_FOUND):
                    return exc.name
                continue
            except (asyncio.TimeoutError, ConnectionError, OSError) as exc:
                await self._close_quietly(channel)
                self.timeline.add("signalling", "invite failed", call=k, detail=f"{type(exc).__name__}: {exc}",
                                  restart=True)
                continue
            # PendingAcceptState: the accept goes out (autoAnswer); the new channel is the
            # manager's from now on
            try:
                await channel.accept()
            except Exception:  # noqa: BLE001 - the answer is in; a lost accept changes nothing here
                pass
            self._old_channels.append(self.signalling)
            self.signalling = channel
            return answer
        return None

    async def _restart_media(self, k: int, restart: Callable[..., Any], sdp: str, remote: list[dict[str, Any]],
                             t0: float) -> None:
        """The restart's checks, then when audio comes again."""
        tl = self.timeline
        loop = asyncio.get_running_loop()
        before = (await self._stats()).get("packets_received", 0)
        try:
            await restart(sdp, remote, timeout=RESTART_CHECKS_TIMEOUT)
        except Exception as exc:  # noqa: BLE001 - a restart that finds no pair leaves the call silent
            tl.add("media", "restart_failed", call=k, reason=f"{type(exc).__name__}: {exc}")
            return
        tl.add("media", "restart_connected", call=k, after=round(loop.time() - t0, 3))
        while True:
            now = (await self._stats()).get("packets_received", 0)
            if now > before:
                tl.add("media", "audio-back", call=k, after=round(loop.time() - t0, 3))
                return
            await asyncio.sleep(0.05)

    @staticmethod
    async def _close_quietly(channel: Any) -> None:
        try:
            await asyncio.wait_for(channel.close(), 3)
        except Exception:  # noqa: BLE001
            pass

    async def run(self) -> Outcome:
        tl = self.timeline
        failed = await self._setup()
        if failed is not None:
            await self._close()
            failed.timeline = tl.as_list()
            return failed
        if self.options.settle:
            await asyncio.sleep(self.options.settle)
        q: dict[str, Any] = {}
        inactivity = float(self.answer.get("inactivityDuration") or 0) / 1000.0
        for k in range(1, self.options.calls + 1):
            if k > 1:
                before = await self._stats()
                tl.add("persistent", "idle", seconds=self.options.idle, ice=self.ice_state())
                if inactivity and self.options.idle >= inactivity:
                    # the channel's inactivity timer (the answer's inactivityDuration) destroys it
                    await asyncio.sleep(inactivity)
                    await self._teardown("inactivity timer")
                    await asyncio.sleep(self.options.idle - inactivity)
                else:
                    await asyncio.sleep(self.options.idle)
                if self.peer is not None and getattr(self.peer, "media", None) is not None:
                    after = await self._stats()
                    tl.add("persistent", "idle-end", ice=self.ice_state(),
                           packets_sent=after["packets_sent"] - before.get("packets_sent", 0),
                           packets_received=after["packets_received"] - before.get("packets_received", 0))
            if self.peer is None:
                # nothing kept: the call starts from scratch (a new set-up, then the contact)
                failed = await self._setup()
                if failed is not None:
                    break
            q = await self._contact(k)
            # the manager's health check when a call ends (onSessionCompleted)
            if self.ice_state() in ("disconnected", "failed", "closed"):
                tl.add("info", "health-check", ice=self.ice_state(), kept=False)
                await self._teardown("unhealthy at call end")
        await self._close()
        if failed is not None:
            failed.timeline = tl.as_list()
            return failed
        out = Outcome(DISCONNECTED, reached_talking=True, local_candidates=self.candidates,
                      remote_candidates=len(self.answer.get("candidates") or []), quality=q)
        out.timeline = tl.as_list()
        return out

    async def _close(self) -> None:
        for old in self._old_channels:
            await self._close_quietly(old)
        self._old_channels.clear()
        for closer in (self.peer and self.peer.close, self.signalling and self.signalling.close):
            if closer:
                try:
                    await asyncio.wait_for(closer(), 3)
                except Exception as exc:  # noqa: BLE001 - clean-up must not hide the outcome
                    self.timeline.add("info", "cleanup_error", detail=f"{type(exc).__name__}: {exc}")
