"""The softphone's call session: connect-rtc-js ``RTCSession`` (``src/rtc_session.js``).

States, in order on the normal path (reference softphone.md "Session state machine")::

    GrabLocalMediaState -> CreateOfferState -> SetLocalSessionDescriptionState ->
    ConnectSignalingAndIceCollectionState -> InviteAnswerState -> AcceptState ->
    TalkingState -> DisconnectedState

Any state up to AcceptState may end in FailedState with an RTC error. ICE collection ends on
the first of: end-of-candidates, the first relay candidate (audio only: one m-line, so the
first candidate is "sufficient"), or the ICE timer (8 s); it fails only with zero
candidates. The session leaves ConnectSignalingAndIceCollectionState only when ICE
collection is complete *and* signalling is connected. TalkingState is entered without
waiting for ICE checks or DTLS: a broken media path is silent audio, not an error.

The session depends on two small interfaces (a peer connection and a signalling channel)
so the timing rules can be tested with fakes and run with the real thing.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol

from . import errors
from .constants import Timers
from .errors import RTCError
from .timeline import Timeline

GRAB_LOCAL_MEDIA = "GrabLocalMediaState"
CREATE_OFFER = "CreateOfferState"
SET_LOCAL_SESSION_DESCRIPTION = "SetLocalSessionDescriptionState"
CONNECT_SIGNALING_AND_ICE_COLLECTION = "ConnectSignalingAndIceCollectionState"
INVITE_ANSWER = "InviteAnswerState"
ACCEPT = "AcceptState"
TALKING = "TalkingState"
DISCONNECTED = "DisconnectedState"
FAILED = "FailedState"


class Peer(Protocol):
    """What the session needs of a peer connection (relay-only, audio only)."""

    def create_peer_connection(self) -> None: ...
    async def get_user_media(self) -> None: ...
    async def create_offer(self) -> str: ...
    async def set_local_description(self, sdp: str) -> None: ...
    def start_gathering(self, on_candidate: Callable[[dict[str, Any]], None],
                        on_complete: Callable[[], None]) -> None: ...
    async def set_remote_description(self, sdp: str) -> None: ...
    async def add_ice_candidate(self, candidate: dict[str, Any]) -> None: ...
    async def talk(self, duration: float) -> dict[str, Any]: ...
    async def close(self) -> None: ...


class Signalling(Protocol):
    remote_bye: asyncio.Event

    async def connect(self, timeout: float, max_retries: int) -> None: ...
    async def invite(self, sdp: str, candidates: list[dict[str, Any]], token: str,
                     timeout: float) -> dict[str, Any]: ...
    async def accept(self) -> None: ...
    async def bye(self, token: str, timeout: float) -> None: ...
    async def close(self) -> None: ...


@dataclass
class Outcome:
    """How the call ended."""

    state: str                         # DisconnectedState or FailedState
    rtc_error: str | None = None
    softphone_error: str | None = None
    detail: str = ""
    reached_talking: bool = False
    local_candidates: int = 0
    remote_candidates: int = 0
    quality: dict[str, Any] = field(default_factory=dict)
    timeline: list[dict[str, Any]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.state == DISCONNECTED and self.rtc_error is None and not self.quality.get("silent_audio")

    def as_dict(self) -> dict[str, Any]:
        return {"state": self.state, "ok": self.ok, "rtc_error": self.rtc_error,
                "softphone_error": self.softphone_error, "detail": self.detail,
                "reached_talking": self.reached_talking, "local_candidates": self.local_candidates,
                "remote_candidates": self.remote_candidates, "quality": self.quality,
                "timeline": self.timeline}


class RTCSession:
    """One outbound softphone call leg (the agent is the offerer)."""

    def __init__(self, peer: Peer, signalling: Signalling, *, call_context_token: str,
                 timeline: Timeline | None = None, timers: Timers = Timers(),
                 talk_time: float = 3.0):
        self.peer = peer
        self.signalling = signalling
        self.token = call_context_token
        self.timeline = timeline or Timeline()
        self.timers = timers
        self.talk_time = talk_time
        self.state = ""
        self.candidates: list[dict[str, Any]] = []
        self.remote_candidates: list[dict[str, Any]] = []
        self._bye: asyncio.Future | None = None

    def _enter(self, state: str, **data: Any) -> None:
        self.state = state
        self.timeline.add("state", state, **data)

    async def _connect_to_accept(self) -> None:
        """RTCSession.connect() up to AcceptState: the peer connection (and its candidate pool)
        is made before GrabLocalMediaState; then the offer, signalling and ICE collection, the
        invite and its answer, accept. RTCError on the way."""
        self.peer.create_peer_connection()
        await self._grab_local_media()
        offer = await self._create_offer()
        await self._set_local_description(offer)
        await self._connect_signalling_and_ice_collection()
        answer = await self._invite_answer(offer)
        await self._accept(answer)

    async def run(self) -> Outcome:
        reached_talking = False
        quality: dict[str, Any] = {}
        try:
            await self._connect_to_accept()
            self._enter(TALKING)
            reached_talking = True
            quality = await self._talking()
            self._enter(DISCONNECTED)
            outcome = Outcome(DISCONNECTED)
        except RTCError as exc:
            if reached_talking:  # a failure after Talking is not an RTC error: the call just ends
                self._enter(DISCONNECTED, reason=str(exc))
                outcome = Outcome(DISCONNECTED)
            else:
                sp = errors.softphone_error_type(exc.name)
                self.timeline.add("error", exc.name, softphone_error=sp, detail=exc.detail, state=self.state)
                self._enter(FAILED, rtc_error=exc.name)
                outcome = Outcome(FAILED, exc.name, sp, exc.detail)
        finally:
            await self._clean_up()
        outcome.reached_talking = reached_talking
        outcome.local_candidates = len(self.candidates)
        outcome.remote_candidates = len(self.remote_candidates)
        outcome.quality = quality
        outcome.timeline = self.timeline.as_list()
        return outcome

    async def _grab_local_media(self) -> None:
        self._enter(GRAB_LOCAL_MEDIA)
        try:
            await asyncio.wait_for(self.peer.get_user_media(), self.timers.gum)
        except asyncio.TimeoutError:
            raise RTCError(errors.GUM_TIMEOUT_FAILURE, f"no local media within {self.timers.gum:.1f} s")
        except Exception as exc:  # noqa: BLE001
            raise RTCError(errors.GUM_OTHER_FAILURE, str(exc))

    async def _create_offer(self) -> str:
        self._enter(CREATE_OFFER)
        try:
            return await self.peer.create_offer()
        except Exception as exc:  # noqa: BLE001
            raise RTCError(errors.CREATE_OFFER_FAILURE, str(exc))

    async def _set_local_description(self, offer: str) -> None:
        self._enter(SET_LOCAL_SESSION_DESCRIPTION)
        try:
            await self.peer.set_local_description(offer)
        except Exception as exc:  # noqa: BLE001
            raise RTCError(errors.SET_LOCAL_DESCRIPTION_FAILURE, str(exc))

    async def _connect_signalling_and_ice_collection(self) -> None:
        self._enter(CONNECT_SIGNALING_AND_ICE_COLLECTION)
        loop = asyncio.get_running_loop()
        ice_done = loop.create_future()

        def finish(reason: str) -> None:
            if not ice_done.done():
                ice_done.set_result(reason)

        def on_candidate(c: dict[str, Any]) -> None:
            if ice_done.done():
                # Gathered after collection ended: the library ignores it (no trickle ICE).
                self.timeline.add("candidate", "late", candidate=c["candidate"])
                return
            self.candidates.append(c)
            self.timeline.add("candidate", "relay", candidate=c["candidate"], url=c.get("url"))
            # one m-line: the first component-1 candidate has a foundation "seen on every m-line"
            finish("sufficient")

        def on_complete() -> None:
            if not ice_done.done():
                self.timeline.add("ice", "end_of_candidates")
            finish("end_of_candidates")

        timer = loop.call_later(self.timers.ice, finish, "timeout")
        self.peer.start_gathering(on_candidate, on_complete)
        connecting = asyncio.ensure_future(
            self.signalling.connect(self.timers.connect, self.timers.connect_max_retries))

        async def ice() -> None:
            reason = await ice_done
            timer.cancel()
            self.timeline.add("ice", "collection_complete", reason=reason, candidates=len(self.candidates))
            if not self.candidates:
                raise RTCError(errors.ICE_COLLECTION_TIMEOUT,
                               f"no relay candidate (collection ended by {reason})")

        ice_task = asyncio.ensure_future(ice())
        try:
            # whichever fails first fails the state; both must succeed to go on
            for fut in asyncio.as_completed([ice_task, connecting]):
                await fut
        finally:
            timer.cancel()
            for t in (ice_task, connecting):
                if not t.done():
                    t.cancel()

    async def _invite_answer(self, offer: str) -> dict[str, Any]:
        self._enter(INVITE_ANSWER)
        # RTCIceCandidate.toJSON(): the lab's extra "url" (for the timeline) is not sent
        wire = [{k: c[k] for k in ("candidate", "sdpMid", "sdpMLineIndex") if k in c} for c in self.candidates]
        answer = await self.signalling.invite(offer, wire, self.token, self.timers.invite)
        if not answer.get("sdp"):
            raise RTCError(errors.INVALID_REMOTE_SDP, "answer without SDP")
        remote = answer.get("candidates") or []
        if not remote:
            raise RTCError(errors.NO_REMOTE_ICE_CANDIDATE, "answer without candidates")
        self.remote_candidates = list(remote)
        return answer

    async def _accept(self, answer: dict[str, Any]) -> None:
        self._enter(ACCEPT)
        try:
            await self.peer.set_remote_description(answer["sdp"])
            for c in self.remote_candidates:
                self.timeline.add("candidate", "remote", candidate=c.get("candidate"))
                await self.peer.add_ice_candidate(c)
            await self.peer.add_ice_candidate(None)  # no trickle: the answer had them all
        except Exception as exc:  # noqa: BLE001
            raise RTCError(errors.SET_REMOTE_DESCRIPTION_FAILURE, str(exc))
        await self.signalling.accept()

    async def _talking(self) -> dict[str, Any]:
        talk = asyncio.ensure_future(self.peer.talk(self.talk_time))
        bye = asyncio.ensure_future(self.signalling.remote_bye.wait())
        await asyncio.wait([talk, bye], return_when=asyncio.FIRST_COMPLETED)
        if not talk.done():
            self.timeline.add("signalling", "remote_hangup")
            talk.cancel()
            quality: dict[str, Any] = {}
        else:
            quality = talk.result()
            bye.cancel()
            # TalkingState.hangup() in rtc_session.js: signalingChannel.hangup() sends the bye
            # and the session transits to DisconnectedState in the same call; the wait for the
            # bye's answer (MAX_ACCEPT_BYE_DELAY_MS) belongs to the signalling channel's own
            # state machine, not the session's. Clean-up waits for it before closing.
            self._bye = asyncio.ensure_future(self.signalling.bye(self.token, self.timers.accept_bye))
        if quality:
            self.timeline.add("quality", "summary", **quality)
        return quality

    async def _wait_bye(self) -> None:
        try:
            await asyncio.wait_for(self._bye, self.timers.accept_bye)
        except asyncio.TimeoutError:    # a dead path: the bye never got out (MAX_ACCEPT_BYE_DELAY_MS)
            self.timeline.add("signalling", "bye_unanswered", reason="timeout")

    async def _clean_up(self) -> None:
        closers = [self.signalling.close, self.peer.close]
        if self._bye is not None:
            # DisconnectedState stops the peer connection at once; the channel stays open
            # until the bye is answered or its 2 s are up
            closers = [self.peer.close, self._wait_bye, self.signalling.close]
        for closer in closers:
            try:
                await asyncio.wait_for(closer(), 3)
            except Exception as exc:  # noqa: BLE001 - clean-up must not hide the outcome
                self.timeline.add("info", "cleanup_error", detail=f"{type(exc).__name__}: {exc}")
