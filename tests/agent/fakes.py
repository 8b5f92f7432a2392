"""Stand-ins for the peer connection and the signalling channel, scripted in time."""

from __future__ import annotations

import asyncio
from typing import Any

from lab.agent import errors
from lab.agent.errors import RTCError


def cand(i: int = 0) -> dict[str, Any]:
    return {"candidate": f"candidate:{i} 1 udp 767 127.0.0.1 {50000 + i} typ relay raddr 127.0.0.1 rport 40000",
            "sdpMid": "0", "sdpMLineIndex": 0}


class FakePeer:
    def __init__(self, *, candidates_at: tuple[float, ...] = (0.05,), complete_at: float | None = None,
                 gum_delay: float = 0.0, gum_error: Exception | None = None):
        self.candidates_at = candidates_at
        self.complete_at = complete_at
        self.gum_delay = gum_delay
        self.gum_error = gum_error
        self.remote: list[dict[str, Any]] = []
        self.closed = False
        self._handles: list[asyncio.TimerHandle] = []

    def create_peer_connection(self) -> None:
        pass

    async def get_user_media(self) -> None:
        await asyncio.sleep(self.gum_delay)
        if self.gum_error:
            raise self.gum_error

    async def create_offer(self) -> str:
        return "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n"

    async def set_local_description(self, sdp: str) -> None:
        pass

    def start_gathering(self, on_candidate, on_complete) -> None:
        loop = asyncio.get_running_loop()
        for i, t in enumerate(self.candidates_at):
            self._handles.append(loop.call_later(t, on_candidate, cand(i)))
        if self.complete_at is not None:
            self._handles.append(loop.call_later(self.complete_at, on_complete))

    async def set_remote_description(self, sdp: str) -> None:
        pass

    async def add_ice_candidate(self, c: dict[str, Any] | None) -> None:
        if c is not None:
            self.remote.append(c)

    async def talk(self, duration: float) -> dict[str, Any]:
        await asyncio.sleep(duration)
        return {"silent_audio": False, "packets_sent": 10, "packets_received": 10}

    async def close(self) -> None:
        self.closed = True
        for h in self._handles:
            h.cancel()


class FakeSignalling:
    """``connect_attempts``: per attempt, seconds until it fails ('fail', t) or opens ('ok', t);
    an attempt beyond the list hangs. ``invite`` answers after ``answer_delay`` with
    ``answer`` or a JSON-RPC ``error_code``."""

    def __init__(self, *, connect_attempts=(("ok", 0.02),), answer_delay: float = 0.02,
                 error_code: int | None = None, answer: dict[str, Any] | None = None,
                 bye_delay: float = 0.0):
        self.connect_attempts = list(connect_attempts)
        self.answer_delay = answer_delay
        self.bye_delay = bye_delay
        self.bye_done: float | None = None
        self.error_code = error_code
        self.answer = answer if answer is not None else {"sdp": "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n", "candidates": [cand(9)]}
        self.remote_bye = asyncio.Event()
        self.attempts = 0
        self.sent: list[str] = []

    async def connect(self, timeout: float, max_retries: int) -> None:
        async def attempts():
            while True:
                if self.attempts >= len(self.connect_attempts):
                    await asyncio.Event().wait()
                kind, t = self.connect_attempts[self.attempts]
                self.attempts += 1
                await asyncio.sleep(t)
                if kind == "ok":
                    return
                if self.attempts >= max_retries:   # 3 attempts in all, as signaling.js
                    raise RTCError(errors.SIGNALLING_CONNECTION_FAILURE, "retries exhausted")
        try:
            await asyncio.wait_for(attempts(), timeout)
        except asyncio.TimeoutError:
            raise RTCError(errors.SIGNALLING_CONNECTION_FAILURE, "connect timeout")

    async def invite(self, sdp, candidates, token, timeout):
        self.sent.append("invite")
        try:
            await asyncio.wait_for(asyncio.sleep(self.answer_delay), timeout)
        except asyncio.TimeoutError:
            raise RTCError(errors.SIGNALLING_HANDSHAKE_FAILURE, "invite timeout")
        if self.error_code is not None:
            raise RTCError(errors.invite_error(self.error_code), str(self.error_code))
        return self.answer

    async def accept(self) -> None:
        self.sent.append("accept")

    async def bye(self, token, timeout) -> None:
        self.sent.append("bye")
        if self.bye_delay:
            # an unanswered bye gives up after its timeout (the channel's, not the session's)
            await asyncio.sleep(min(self.bye_delay, timeout))
        self.bye_done = asyncio.get_running_loop().time()

    async def close(self) -> None:
        pass
