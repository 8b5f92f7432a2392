"""STUN client transactions with a browser's retransmission schedule (RFC 8489 section 6.2.1).

aioice's ``stun.Transaction`` hard-codes RTO 0.5 s, 7 sends and a last wait that keeps
doubling (fails at 63.5 s). Chrome (libwebrtc ``stun_request.cc``) starts at 250 ms, caps the
RTO at 8 s, sends 9 times and gives up 39.75 s after the first send. The schedule is data
here so that both, and the RFC's, can be reproduced and compared.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Callable

from aioice import stun


@dataclass(frozen=True)
class RetransmitSchedule:
    """When a request is (re)sent and when the transaction gives up.

    Waits double from ``initial_rto``, capped at ``rto_cap``; after the last send the client
    waits ``final_wait`` (None: one more doubling, aioice's behaviour)."""

    name: str
    initial_rto: float
    sends: int
    rto_cap: float | None = None
    final_wait: float | None = None

    def waits(self) -> list[float]:
        out, rto = [], self.initial_rto
        for _ in range(self.sends):
            out.append(rto if self.rto_cap is None else min(rto, self.rto_cap))
            rto *= 2
        if self.final_wait is not None:
            out[-1] = self.final_wait
        return out

    def send_offsets(self) -> list[float]:
        """Seconds after the first send at which each send happens."""
        t, out = 0.0, []
        for w in self.waits():
            out.append(t)
            t += w
        return out

    def timeout(self) -> float:
        """Seconds after the first send at which the transaction fails."""
        return sum(self.waits())


# libwebrtc: STUN_INITIAL_RTO 250 ms, STUN_MAX_RETRANSMISSIONS 8 (9 sends), STUN_MAX_RTO 8000 ms
CHROME = RetransmitSchedule("chrome", 0.25, 9, rto_cap=8.0, final_wait=8.0)        # times out at 39.75 s
# aioice 0.13 stun.py: RETRY_RTO 0.5, RETRY_MAX 6 (7 sends), the last wait doubles too
AIOICE = RetransmitSchedule("aioice", 0.5, 7)                                          # 63.5 s


class ScheduledTransaction:
    """One STUN request/response exchange following a :class:`RetransmitSchedule`.

    ``reliable`` (TCP, TLS) sends once and waits the schedule's whole timeout, as RFC 8489
    section 6.2.2 asks. ``on_send(attempt)`` is called at every (re)transmission so the caller
    can time them."""

    def __init__(self, request: stun.Message, addr: tuple[str, int], protocol: stun.TransactionSender,
                 schedule: RetransmitSchedule, *, reliable: bool = False,
                 integrity_key: bytes | None = None, long_term_credential: bool = False,
                 ignore_unauthenticated_errors: bool = False,
                 on_send: Callable[[int], None] | None = None,
                 on_ignored: Callable[[int], None] | None = None):
        self.request = request
        self.addr = addr
        self.protocol = protocol
        self.schedule = schedule
        self.reliable = reliable
        self.integrity_key = integrity_key
        self.long_term_credential = long_term_credential
        self.ignore_unauthenticated_errors = ignore_unauthenticated_errors
        self.on_send = on_send
        self.on_ignored = on_ignored
        self.future: asyncio.Future[tuple[stun.Message, tuple[str, int]]] = (
            asyncio.get_running_loop().create_future())

    def response_received(self, message: stun.Message, addr: tuple[str, int]) -> None:
        # RFC 8489 section 9.2.5: a response to an authenticated request must carry a valid
        # MESSAGE-INTEGRITY, except the 401/438 that hand out a new realm or nonce.
        if self.integrity_key is not None:
            unsigned_ok = (self.long_term_credential and message.message_class == stun.Class.ERROR
                           and message.error_code in (401, 438))
            if not unsigned_ok and not message.check_message_integrity(self.integrity_key):
                return
        elif (self.ignore_unauthenticated_errors and message.message_class == stun.Class.ERROR
              and message.error_code not in (300, 401)):
            # Chrome 156 (measured, reference ice-timing.md): an error other than the 401
            # challenge (or a 300 redirect) to the first, unauthenticated Allocate is not acted
            # on; the request goes on being retransmitted on its schedule and no candidate
            # error is reported. Nothing in it could be authenticated: a forged 486 from
            # anyone on the path must not end the allocation.
            if self.on_ignored is not None:
                self.on_ignored(message.error_code)
            return
        if self.future.done():
            return
        if message.message_class == stun.Class.RESPONSE:
            self.future.set_result((message, addr))
        else:
            self.future.set_exception(stun.TransactionFailed(message))

    async def run(self) -> tuple[stun.Message, tuple[str, int]]:
        waits = [self.schedule.timeout()] if self.reliable else self.schedule.waits()
        loop = asyncio.get_running_loop()
        # deadlines from the first send, so that a busy event loop does not stretch the schedule
        deadline = loop.time()
        for attempt, wait in enumerate(waits):
            if self.on_send is not None:
                self.on_send(attempt)
            self.protocol.send_stun(self.request, self.addr)
            deadline += wait
            try:
                return await asyncio.wait_for(asyncio.shield(self.future), max(0.0, deadline - loop.time()))
            except asyncio.TimeoutError:
                continue
        if not self.future.done():
            self.future.cancel()
        raise stun.TransactionTimeout()
