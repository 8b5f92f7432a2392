"""LilyRTC signalling over a TLS WebSocket (reference softphone.md "Signalling").

Per connection: the URL names the call (``callId``) and carries the call's context token
(``contactCtx``). ``invite`` is answered after the call's ``answer_delay`` with the media
edge's answer ``{sdp, candidates, inactivityDuration, peerConnectionId,
peerConnectionToken}``, or with a JSON-RPC error: 404 CallNotFound (unknown call), 403
AccessDenied (wrong contactCtx), 486 Busy. ``accept`` tells the media edge to connect the
caller; ``bye`` ends the call. Every message in and out is logged as a JSON line.

The persistent peer connection (connect-rtc-js ``RtcPeerConnectionManager``, docs/persistent.md):
an ``invite`` with ``persistentConnection: true`` and no ``callContextToken`` is the CCP's
page-load set-up, answered like a call; ``connectContact`` then puts a contact on that peer
connection (the caller is connected, as by ``accept``) and ``disconnectContact`` takes it
off again, leaving the peer connection up. An ``invite`` with ``iceRestart: true`` (the
library's ``IceRestartSubstate``) names the peer connection by the ``peerConnectionId`` and
``peerConnectionToken`` an earlier answer gave, whatever channel it comes on (the library opens
a new one named after the contact): the media edge restarts ICE on that connection and the
answer keeps the id and token. An unknown or stale id or token is answered 400 ``Stale Peer
Connection`` (what the library's ``ConnectedSubstate.onSignalingFailed`` looks for), an offer
the edge cannot use 400 too; neither changes anything.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import ssl as ssl_mod
import sys
import time
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, TextIO
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import ServerConnection, serve
from websockets.datastructures import Headers
from websockets.http11 import Response

PATH = "/LilyRTC"
INACTIVITY_DURATION = 60000  # ms, what the answer carries; the library only stores it

ACCESS_DENIED = (403, "AccessDenied")
CALL_NOT_FOUND = (404, "CallNotFound")
BUSY = (486, "Busy")
STALE_PEER_CONNECTION = (400, "Stale Peer Connection")
BAD_RESTART_OFFER = (400, "Bad Request: ICE restart offer without ICE credentials")

BEHAVIOURS = ("answer", "busy", "not_found", "silent")

# (call_id, offer sdp, offer candidates) -> {"sdp": ..., "candidates": [...]}
Answerer = Callable[[str, str, list[dict[str, Any]]], Awaitable[dict[str, Any]]]


@dataclass
class PeerConnection:
    """A peer connection an answer named: its token and the call the media edge keeps it under."""

    token: str
    call_id: str


@dataclass
class CallPlan:
    """How the mock treats one call: ``behaviour`` answer | busy | not_found | silent (never
    answers), after ``answer_delay`` seconds."""

    contact_ctx: str
    behaviour: str = "answer"
    answer_delay: float = 0.0

    def __post_init__(self):
        if self.behaviour not in BEHAVIOURS:
            raise ValueError(f"behaviour must be one of {', '.join(BEHAVIOURS)}, not {self.behaviour!r}")
        if self.answer_delay < 0:
            raise ValueError("answer_delay must be >= 0")


def static_answerer(sdp: str, candidates: list[dict[str, Any]]) -> Answerer:
    """An answerer that always returns the same description (tests, signalling-only labs)."""
    async def answer(call_id: str, offer: str, offer_candidates: list[dict[str, Any]]) -> dict[str, Any]:
        return {"sdp": sdp, "candidates": candidates}
    return answer


class SignallingServer:
    def __init__(self, *, answerer: Answerer, ssl: ssl_mod.SSLContext | None,
                 on_accept: Callable[[str], Awaitable[None]] | None = None,
                 on_bye: Callable[[str], Awaitable[None]] | None = None,
                 restarter: Answerer | None = None,
                 log: TextIO | None = sys.stdout):
        self.answerer = answerer
        self.restarter = restarter      # (edge call id, offer, candidates) -> the restart's answer
        self.peer_connections: dict[str, PeerConnection] = {}
        # a restart's channel (named after the contact) -> the call the edge keeps its connection under
        self.restarted: dict[str, str] = {}
        self.ssl = ssl
        self.on_accept = on_accept
        self.on_bye = on_bye
        self.calls: dict[str, CallPlan] = {}
        self.log = log
        self.server = None
        self.connections: dict[str, ServerConnection] = {}

    def add_call(self, call_id: str, plan: CallPlan) -> None:
        self.calls[call_id] = plan

    def _log(self, **event: Any) -> None:
        if self.log is not None:
            self.log.write(json.dumps({"t": round(time.time(), 4), "service": "signalling", **event}) + "\n")
            self.log.flush()

    async def start(self, host: str, port: int) -> tuple[str, int]:
        self.server = await serve(self._handle, host, port, ssl=self.ssl, process_request=self._check_path,
                                  ping_interval=None)
        sock = next(iter(self.server.sockets))
        addr = sock.getsockname()[:2]
        self._log(event="listening", host=addr[0], port=addr[1], tls=self.ssl is not None)
        return addr

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()

    def _check_path(self, connection: ServerConnection, request) -> Response | None:
        if urlsplit(request.path).path != PATH:
            self._log(event="rejected", path=request.path, status=404)
            return Response(404, "Not Found", Headers(), b"not a LilyRTC endpoint\n")
        return None

    async def hangup(self, call_id: str) -> None:
        """The cloud ends the call: a ``bye`` request to the softphone."""
        ws = self.connections.get(call_id)
        if ws is not None:
            await self._send(ws, call_id, {"jsonrpc": "2.0", "method": "bye", "params": {},
                                           "id": secrets.token_hex(8)})

    async def _send(self, ws: ServerConnection, call_id: str, msg: dict[str, Any]) -> None:
        self._log(event="send", callId=call_id, method=msg.get("method"), id=msg.get("id"),
                  error=msg.get("error"))
        await ws.send(json.dumps(msg))

    async def _handle(self, ws: ServerConnection) -> None:
        query = parse_qs(urlsplit(ws.request.path).query)
        call_id = (query.get("callId") or [""])[0]
        ctx = (query.get("contactCtx") or [""])[0]
        self._log(event="connected", callId=call_id, peer=str(ws.remote_address))
        self.connections[call_id] = ws
        tasks: set[asyncio.Task] = set()
        try:
            async for raw in ws:
                try:
                    msg = json.loads(raw)
                except ValueError:
                    self._log(event="bad_json", callId=call_id)
                    continue
                method, rid = msg.get("method"), msg.get("id")
                self._log(event="recv", callId=call_id, method=method, id=rid)
                if method == "invite":
                    # answered concurrently: a slow answer must not block a bye
                    t = asyncio.ensure_future(self._invite(ws, call_id, ctx, msg))
                    tasks.add(t)
                    t.add_done_callback(tasks.discard)
                elif method == "accept":
                    if self.on_accept:
                        await self.on_accept(call_id)
                    await self._send(ws, call_id, {"jsonrpc": "2.0", "result": {}, "id": rid})
                elif method == "connectContact":
                    # a contact on the persistent peer connection set up by this channel's invite
                    if self.on_accept:
                        await self.on_accept(call_id)
                    await self._send(ws, call_id, {"jsonrpc": "2.0", "result": {}, "id": rid})
                elif method == "disconnectContact":
                    await self._send(ws, call_id, {"jsonrpc": "2.0", "result": {}, "id": rid})
                elif method == "bye":
                    await self._send(ws, call_id, {"jsonrpc": "2.0", "result": {}, "id": rid})
                    # the library's destroy() says bye on its latest channel: a restart's
                    # ends the connection the restart was for
                    edge_call = self.restarted.pop(call_id, call_id)
                    for pc_id in [k for k, v in self.peer_connections.items() if v.call_id == edge_call]:
                        del self.peer_connections[pc_id]
                    if self.on_bye:
                        await self.on_bye(edge_call)
                elif method is None:
                    pass  # a response to our own bye / renewClientToken
                else:
                    await self._send(ws, call_id, {"jsonrpc": "2.0", "id": rid,
                                                   "error": {"code": 400, "message": f"unknown method {method}"}})
        except Exception as exc:  # noqa: BLE001 - a dropped client is normal
            self._log(event="closed", callId=call_id, reason=f"{type(exc).__name__}: {exc}")
        finally:
            for t in tasks:
                t.cancel()
            if self.connections.get(call_id) is ws:
                del self.connections[call_id]
            self._log(event="disconnected", callId=call_id)

    async def _invite(self, ws: ServerConnection, call_id: str, ctx: str, msg: dict[str, Any]) -> None:
        rid = msg.get("id")
        params = msg.get("params") or {}
        plan = self.calls.get(call_id)

        async def error(code_msg: tuple[int, str]) -> None:
            await self._send(ws, call_id, {"jsonrpc": "2.0", "id": rid,
                                           "error": {"code": code_msg[0], "message": code_msg[1]}})

        if params.get("iceRestart") is True:
            return await self._restart(ws, call_id, rid, params, error)
        if params.get("persistentConnection") and not params.get("callContextToken"):
            # the page-load set-up of a persistent peer connection: no contact to check the
            # token of; the call's plan (busy, silent, a delay) still applies
            base = plan or CallPlan(contact_ctx="")
            plan = CallPlan(contact_ctx="", behaviour=base.behaviour, answer_delay=base.answer_delay)
            ctx = ""
        if plan is None or plan.behaviour == "not_found":
            return await error(CALL_NOT_FOUND)
        if ctx != plan.contact_ctx or (params.get("callContextToken") or "") != plan.contact_ctx:
            return await error(ACCESS_DENIED)
        await asyncio.sleep(plan.answer_delay)
        if plan.behaviour == "busy":
            return await error(BUSY)
        if plan.behaviour == "silent":
            return
        try:
            answer = await self.answerer(call_id, params.get("sdp", ""), params.get("candidates") or [])
        except Exception as exc:  # noqa: BLE001
            self._log(event="answer_failed", callId=call_id, reason=f"{type(exc).__name__}: {exc}")
            return await error((500, "InternalError"))
        pc_id, pc_token = secrets.token_hex(8), secrets.token_urlsafe(16)
        self.peer_connections[pc_id] = PeerConnection(pc_token, call_id)
        await self._send(ws, call_id, {"jsonrpc": "2.0", "id": rid, "result": {
            "sdp": answer["sdp"], "candidates": answer["candidates"],
            "inactivityDuration": INACTIVITY_DURATION, "peerConnectionId": pc_id,
            "peerConnectionToken": pc_token}})

    async def _restart(self, ws: ServerConnection, call_id: str, rid: Any, params: dict[str, Any],
                       error: Callable[[tuple[int, str]], Awaitable[None]]) -> None:
        """An ICE restart of a kept peer connection (see the module's docstring)."""
        pc_id, pc_token = params.get("peerConnectionId"), params.get("peerConnectionToken")
        pc = self.peer_connections.get(pc_id) if isinstance(pc_id, str) else None
        if pc is None or not isinstance(pc_token, str) or not secrets.compare_digest(pc.token, pc_token) \
                or self.restarter is None:
            self._log(event="ice_restart_refused", callId=call_id, reason="stale peer connection")
            return await error(STALE_PEER_CONNECTION)
        sdp, candidates = params.get("sdp"), params.get("candidates")
        if not isinstance(sdp, str) or "a=ice-ufrag:" not in sdp or not isinstance(candidates, list) \
                or not all(isinstance(c, dict) and isinstance(c.get("candidate"), str) for c in candidates):
            self._log(event="ice_restart_refused", callId=call_id, reason="bad offer")
            return await error(BAD_RESTART_OFFER)
        try:
            answer = await self.restarter(pc.call_id, sdp, candidates)
        except KeyError:
            # the edge no longer has the call: the peer connection is gone
            self._log(event="ice_restart_refused", callId=call_id, reason="no such call at the edge")
            return await error(STALE_PEER_CONNECTION)
        except ValueError as exc:
            self._log(event="ice_restart_refused", callId=call_id, reason=str(exc))
            return await error(BAD_RESTART_OFFER)
        except Exception as exc:  # noqa: BLE001
            self._log(event="answer_failed", callId=call_id, reason=f"{type(exc).__name__}: {exc}")
            return await error((500, "InternalError"))
        self.restarted[call_id] = pc.call_id
        await self._send(ws, call_id, {"jsonrpc": "2.0", "id": rid, "result": {
            "sdp": answer["sdp"], "candidates": answer["candidates"],
            "inactivityDuration": INACTIVITY_DURATION, "peerConnectionId": pc_id,
            "peerConnectionToken": pc.token}})
