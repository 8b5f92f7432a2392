"""The softphone's side of the legacy LilyRTC signalling: JSON-RPC 2.0 over a WebSocket
(connect-rtc-js ``src/signaling.js``; reference softphone.md "Signalling").

``connect`` opens ``<signalingEndpoint>?callId=..&contactCtx=..``; a WebSocket that fails
before it opens is opened again, ``CONNECT_MAX_RETRIES`` attempts in all (the library's
``PendingConnectState.channelDown``: ``++retries < CONNECT_MAX_RETRIES``, so 3 means the
first attempt and 2 more), and the whole connecting phase is bounded by
``DEFAULT_CONNECT_TIMEOUT`` (each new attempt gets what is left of it). ``invite`` waits
``MAX_INVITE_DELAY`` for the answer; ``accept`` is sent without waiting; ``bye`` waits
``MAX_ACCEPT_BYE_DELAY``.
"""

from __future__ import annotations

import asyncio
import json
import socket
import ssl as ssl_mod
import uuid
from typing import Any, Awaitable, Callable
from urllib.parse import quote

from websockets.asyncio.client import connect as ws_connect

from . import errors
from .constants import CONNECT_MAX_RETRIES, DEFAULT_CONNECT_TIMEOUT, MAX_ACCEPT_BYE_DELAY, MAX_INVITE_DELAY
from .errors import RTCError
from .timeline import Timeline
from lab.core.errors import LabError


class RPCError(LabError):
    def __init__(self, code: int, message: str):
        super().__init__(f"{code} {message}")
        self.code = code
        self.message = message


def signalling_url(endpoint: str, call_id: str, contact_ctx: str) -> str:
    return f"{endpoint}?callId={call_id}&contactCtx={quote(contact_ctx, safe='')}"


class SignallingChannel:
    def __init__(self, endpoint: str, call_id: str, contact_ctx: str, *, timeline: Timeline,
                 ssl: ssl_mod.SSLContext | None = None, server_hostname: str | None = None,
                 channel: Callable[[], Awaitable[socket.socket]] | None = None):
        self.url = signalling_url(endpoint, call_id, contact_ctx)
        # a VDI virtual channel (lab/agent/vdi.py): each attempt's TCP connection comes from it
        self.channel = channel
        self.ssl = ssl
        self.server_hostname = server_hostname
        self.timeline = timeline
        self.ws = None
        self._pending: dict[str, asyncio.Future] = {}
        self._read_at: dict[str, float] = {}     # when each answer was read, on the loop's clock
        self._reader: asyncio.Task | None = None
        self.remote_bye = asyncio.Event()
        self.client_token: str | None = None

    async def connect(self, timeout: float = DEFAULT_CONNECT_TIMEOUT,
                      max_retries: int = CONNECT_MAX_RETRIES) -> None:
        """Open the WebSocket, or raise SIGNALLING_CONNECTION_FAILURE."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        attempt = made = 0
        while True:
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            self.timeline.add("signalling", "connecting", attempt=attempt, url=self.url.split("?")[0])
            made = attempt + 1
            try:
                kw: dict[str, Any] = {"ssl": self.ssl} if self.url.startswith("wss:") else {}
                if self.server_hostname and "ssl" in kw:
                    kw["server_hostname"] = self.server_hostname

                async def open_ws():
                    if self.channel is not None:
                        kw["sock"] = await self.channel()
                    return await ws_connect(self.url, open_timeout=None, ping_interval=None, **kw)

                self.ws = await asyncio.wait_for(open_ws(), remaining)
            except asyncio.TimeoutError:
                self.timeline.add("signalling", "connect_timeout", attempt=attempt)
                break
            except (OSError, Exception) as exc:  # noqa: BLE001 - any failure before open is a retry
                self.timeline.add("signalling", "connect_failed", attempt=attempt,
                                  reason=f"{type(exc).__name__}: {exc}")
                attempt += 1
                # signaling.js: `++this._retries < CONNECT_MAX_RETRIES` -> 3 attempts in all
                if attempt >= max_retries:
                    break
                continue
            self.timeline.add("signalling", "connected", attempt=attempt)
            self._reader = asyncio.ensure_future(self._read())
            return
        raise RTCError(errors.SIGNALLING_CONNECTION_FAILURE,
                       f"WebSocket not open after {made} attempt(s) within {timeout:.1f} s")

    async def _read(self) -> None:
        try:
            async for raw in self.ws:
                msg = json.loads(raw)
                method = msg.get("method")
                self.timeline.add("signalling", f"recv {method or ('error' if 'error' in msg else 'result')}",
                                  id=msg.get("id"), **({"error": msg["error"]} if "error" in msg else {}))
                if method == "bye":
                    await self._send({"jsonrpc": "2.0", "result": {}, "id": msg.get("id")})
                    self.remote_bye.set()
                elif method == "renewClientToken":
                    self.client_token = (msg.get("params") or {}).get("clientToken")
                    await self._send({"jsonrpc": "2.0", "result": {}, "id": msg.get("id")})
                elif "id" in msg and msg["id"] in self._pending:
                    self._read_at[msg["id"]] = asyncio.get_running_loop().time()
                    fut = self._pending.pop(msg["id"])
                    if not fut.done():
                        if "error" in msg:
                            err = msg["error"] or {}
                            fut.set_exception(RPCError(int(err.get("code", 0)), str(err.get("message", ""))))
                        else:
                            fut.set_result(msg.get("result") or {})
        except Exception as exc:  # noqa: BLE001
            self.timeline.add("signalling", "closed", reason=f"{type(exc).__name__}: {exc}")
        else:
            self.timeline.add("signalling", "closed")
        for fut in self._pending.values():
            if not fut.done():
                fut.set_exception(ConnectionError("signalling channel closed"))
        self.remote_bye.set()

    async def _send(self, msg: dict[str, Any]) -> None:
        await self.ws.send(json.dumps(msg))

    async def request(self, method: str, params: dict[str, Any], timeout: float | None) -> dict[str, Any]:
        """Send a request; its result, RPCError, or asyncio.TimeoutError when no answer came
        within ``timeout`` of handing it over (signaling.js: the WebSocket's ``send`` does not
        wait, and PendingAnswerState's timer starts then). An answer read after the deadline
        is a timeout too: on a busy machine the loop may resume this wait late, with both the
        answer and the expired timer ready (an answer racing the 5 s invite timer)."""
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        rid = str(uuid.uuid4())
        fut = loop.create_future()
        self._pending[rid] = fut
        self.timeline.add("signalling", f"send {method}", id=rid)
        await self._send({"jsonrpc": "2.0", "method": method, "params": params, "id": rid})
        try:
            result = await asyncio.wait_for(fut, None if deadline is None else max(0.0, deadline - loop.time()))
        finally:
            self._pending.pop(rid, None)
            read_at = self._read_at.pop(rid, None)
        if deadline is not None and read_at is not None and read_at > deadline:
            raise asyncio.TimeoutError(f"the answer came {read_at - deadline:.3f} s after the timer")
        return result

    async def invite(self, sdp: str, candidates: list[dict[str, Any]], token: str,
                     timeout: float = MAX_INVITE_DELAY) -> dict[str, Any]:
        """Send the offer; the answer, or RTCError (USER_BUSY, CALL_NOT_FOUND, handshake)."""
        return await invite_request(self, {"sdp": sdp, "candidates": candidates, "callContextToken": token},
                                    timeout)

    async def accept(self) -> None:
        """``accept`` goes out without waiting for its acknowledgement (the library does not)."""
        rid = str(uuid.uuid4())
        self.timeline.add("signalling", "send accept", id=rid)
        await self._send({"jsonrpc": "2.0", "method": "accept", "params": {}, "id": rid})

    async def bye(self, token: str, timeout: float = MAX_ACCEPT_BYE_DELAY) -> None:
        try:
            await self.request("bye", {"callContextToken": token}, timeout)
        except (asyncio.TimeoutError, RPCError, ConnectionError) as exc:
            self.timeline.add("signalling", "bye_unanswered", reason=str(exc) or type(exc).__name__)

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()
        if self._reader is not None:
            try:
                await asyncio.wait_for(self._reader, 2)
            except (asyncio.TimeoutError, asyncio.CancelledError):
                self._reader.cancel()


async def invite_request(channel: Any, params: dict[str, Any], timeout: float) -> dict[str, Any]:
    """An ``invite`` over ``channel`` (anything with ``request``: the channel, or a test's
    fake): the answer, or the RTCError the library names for what went wrong (no answer in
    time or a lost connection: the handshake; an error answer: by its code)."""
    try:
        return await channel.request("invite", params, timeout)
    except asyncio.TimeoutError:
        raise RTCError(errors.SIGNALLING_HANDSHAKE_FAILURE, f"no answer to invite within {timeout:.1f} s")
    except RPCError as exc:
        raise RTCError(errors.invite_error(exc.code), str(exc))
    except ConnectionError as exc:
        raise RTCError(errors.SIGNALLING_HANDSHAKE_FAILURE, str(exc))
