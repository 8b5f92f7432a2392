"""Does the way back stay open through a silence? The NAT-hold test, through the TURN
server itself, so that it needs nothing but the media info's credentials.

A STUN answer always finds its way back (the request that asked for it has just opened the
mapping), so silence is tested with data nobody asked for: two allocations on the TURN
server, A and B, each permitting the other's relay (RFC 8656 section 9). B sends data to A's
relay (a Send indication, section 10); the server hands it to A in a Data indication, from
TURN's address to A's mapping on the NAT, exactly as a caller's audio reaches a muted agent.
Once before the silence (does the path carry it at all?), then after ``idle`` seconds in
which A sends nothing. If it no longer arrives, A sends one Binding request: a new outside
address in its answer (most NATs pick a new port), or the data arriving again (a NAT that
gives the same port back), proves the NAT forgot A's mapping during the silence.

Every packet goes through the run's :class:`Pace`; about 16 in all.
"""

from __future__ import annotations

import asyncio
import secrets
import socket
import time

from lab.core import stun

from .measure import UDP_TRANSPORT, Pace, _ms, _udp_exchange, _udp_socket
from .targets import TurnServer

DATA_WAIT = 2.0             # a Data indication through a working path comes in a round trip
DEFAULT_IDLE = 8.0          # fits the default run's 15 s with the allocations and a retry
MAX_IDLE = 240.0            # under RFC 8656's 300 s permission lifetime: the server keeps them
KEEPALIVE = 2.0             # B's Binding requests during the silence: shorter than any NAT's timeout


class _Peer:
    """One UDP socket with its allocation: requests matched by transaction ID (``_Udp``),
    Data indications queued."""

    def __init__(self, udp, dest, server: TurnServer, pace: Pace, deadline: float):
        self.tr, self.proto, self.port = udp
        self.dest, self.server, self.pace, self.deadline = dest, server, pace, deadline
        self.data: asyncio.Queue = asyncio.Queue()
        self.key = self.realm = self.nonce = None
        self.relay = self.mapped = None
        received = self.proto.datagram_received

        def on_datagram(data, addr):
            h = stun.peek(data)
            if h and h.tid not in self.proto.waiting and h.cls == stun.INDICATION and h.method == stun.DATA:
                try:
                    self.data.put_nowait(stun.parse(data).get(stun.DATA_ATTR))
                except stun.ParseError:
                    pass
                return
            received(data, addr)
        self.proto.datagram_received = on_datagram

    async def request(self, method: int, attrs: list, signed: bool = True):
        tid = secrets.token_bytes(12)
        if signed:
            attrs = attrs + [(stun.USERNAME, self.server.username.encode()), (stun.REALM, self.realm),
                             (stun.NONCE, self.nonce)]
        req = stun.encode(method, stun.REQUEST, tid, attrs, key=self.key if signed else None)
        answer = await _udp_exchange(self.proto, self.dest, req, tid, self.pace, min(self.deadline, time.monotonic() + 3),
                                     [])
        try:
            return (stun.parse(answer), tid) if answer else (None, tid)
        except stun.ParseError:
            return None, tid

    async def allocate(self) -> str | None:
        """None, or why not."""
        msg, _ = await self.request(stun.ALLOCATE, [(stun.REQUESTED_TRANSPORT, UDP_TRANSPORT)], signed=False)
        if msg is None or not msg.get(stun.NONCE):
            return "no 401 with a nonce to the Allocate"
        self.realm, self.nonce = msg.get(stun.REALM), msg.get(stun.NONCE)
        self.key = stun.long_term_key(self.server.username, self.realm.decode(errors="replace"), self.server.credential)
        for _ in range(2):
            msg, tid = await self.request(stun.ALLOCATE, [(stun.REQUESTED_TRANSPORT, UDP_TRANSPORT)])
            if msg is not None and msg.cls == stun.ERROR and msg.get(stun.NONCE):
                self.nonce = msg.get(stun.NONCE)         # 438 Stale Nonce: once more
                continue
            break
        if msg is None or not msg.get(stun.XOR_RELAYED_ADDRESS):
            return "the authenticated Allocate failed"
        self.relay = stun.parse_xor_address(msg.get(stun.XOR_RELAYED_ADDRESS), tid)
        if msg.get(stun.XOR_MAPPED_ADDRESS):
            self.mapped = "%s:%d" % stun.parse_xor_address(msg.get(stun.XOR_MAPPED_ADDRESS), tid)
        return None

    async def permit(self, peer) -> bool:
        """RFC 8656 section 9: XOR-PEER-ADDRESS depends on the transaction ID, so the
        request is built here rather than by ``request``."""
        tid = secrets.token_bytes(12)
        attrs = [(stun.XOR_PEER_ADDRESS, stun.xor_address(peer, tid)), (stun.USERNAME, self.server.username.encode()),
                 (stun.REALM, self.realm), (stun.NONCE, self.nonce)]
        req = stun.encode(stun.CREATE_PERMISSION, stun.REQUEST, tid, attrs, key=self.key)
        answer = await _udp_exchange(self.proto, self.dest, req, tid, self.pace, min(self.deadline, time.monotonic() + 3),
                                     [])
        try:
            return answer is not None and stun.parse(answer).cls == stun.SUCCESS
        except stun.ParseError:
            return False

    async def send_to(self, peer, data: bytes) -> bool:
        if not await self.pace.slot(urgent=True):
            return False
        tid = secrets.token_bytes(12)
        self.tr.sendto(stun.encode(stun.SEND, stun.INDICATION, tid, [(stun.XOR_PEER_ADDRESS, stun.xor_address(peer, tid)),
                                                                     (stun.DATA_ATTR, data)]), self.dest)
        return True

    async def binding(self) -> str | None:
        msg, tid = await self.request(stun.BINDING, [], signed=False)
        if msg is None or not msg.get(stun.XOR_MAPPED_ADDRESS):
            return None
        return "%s:%d" % stun.parse_xor_address(msg.get(stun.XOR_MAPPED_ADDRESS), tid)

    async def release(self) -> None:
        if self.relay and await self.pace.slot():
            tid = secrets.token_bytes(12)
            self.tr.sendto(stun.encode(stun.REFRESH, stun.REQUEST, tid, [
                (stun.LIFETIME, stun.u32(0)), (stun.USERNAME, self.server.username.encode()), (stun.REALM, self.realm),
                (stun.NONCE, self.nonce)], key=self.key), self.dest)


async def _delivered(a: _Peer, b: _Peer, token: bytes, tries: int = 2) -> float | None:
    """B sends ``token`` to A's relay (``tries`` times, a loss is not a silence); the time
    until A has it, or None."""
    while not a.data.empty():
        a.data.get_nowait()
    t0 = time.monotonic()
    for _ in range(tries):
        if not await b.send_to(a.relay, token):
            return None
        end = time.monotonic() + DATA_WAIT / tries
        while (left := end - time.monotonic()) > 0:
            try:
                if await asyncio.wait_for(a.data.get(), left) == token:
                    return _ms(time.monotonic() - t0)
            except asyncio.TimeoutError:
                break
    return None


async def nat_hold(server: TurnServer, ip: str, pace: Pace, idle: float, deadline: float) -> dict:
    """The NAT-hold test (module docstring): {"idle_s", "before_ms", "after_ms", "again_ms",
    "mapped_before", "mapped_after"} or {"error"}."""
    out: dict = {"url": server.url, "address": f"{ip}:{server.port}", "idle_s": idle}
    family = socket.AF_INET6 if ":" in ip else socket.AF_INET
    socks = [await _udp_socket(family), await _udp_socket(family)]
    try:
        if None in socks:
            out["error"] = "no UDP socket"
            return out
        a, b = (_Peer(s, (ip, server.port), server, pace, deadline) for s in socks)
        for p in (a, b):
            why = await p.allocate()
            if why:
                out["error"] = why
                return out
        if not (await a.permit(b.relay) and await b.permit(a.relay)):
            out["error"] = "CreatePermission refused (the server may not relay between its own relays)"
            return out
        out["mapped_before"] = a.mapped
        out["before_ms"] = await _delivered(a, b, b"icelab-hold-before")
        if out["before_ms"] is None:
            out["error"] = "data between the two allocations never arrived, even without a silence"
            return out
        # A is silent; B keeps its own mapping (and with it its allocation's 5-tuple) alive,
        # as the far end of a call keeps talking
        quiet = time.monotonic()
        end = quiet + max(0.0, min(idle, deadline - quiet - 2 * DATA_WAIT - 1))
        while (left := end - time.monotonic()) > 0:
            await asyncio.sleep(min(KEEPALIVE, left))
            if time.monotonic() < end - 0.5:
                await b.binding()
        out["idle_s"] = round(time.monotonic() - quiet, 1)
        out["after_ms"] = await _delivered(a, b, b"icelab-hold-after")
        if out["after_ms"] is None:
            # A speaks (a new mapping if the old one is gone); does data come through now?
            out["mapped_after"] = await a.binding()
            out["again_ms"] = await _delivered(a, b, b"icelab-hold-again")
        await a.release()
        await b.release()
        return out
    finally:
        for s in socks:
            if s:
                s[0].close()
