"""A TURN allocation driver (RFC 8656 section 7) on aioice's TURN client, with the browser's
STUN retransmission schedule and per-send timing.

aioice's ``TurnClientUdpProtocol``/``TurnClientTcpProtocol`` do the wire work (Allocate,
401 handling, refresh, ChannelBind, channel data); the only thing changed is their public
``request()`` method, overridden here to run a :class:`~lab.agent.stuntx.ScheduledTransaction`
instead of aioice's fixed-schedule one. :class:`RelayTransport` then plays the datagram
transport over the allocation, built on the client's public ``send_data``/``delete``.
"""

from __future__ import annotations

import asyncio
import socket
import ssl as ssl_mod
from dataclasses import dataclass
from typing import Any, Callable

from aioice import stun, turn

from .stuntx import CHROME, RetransmitSchedule, ScheduledTransaction

UDP_SOCKET_BUFFER_SIZE = 262144


@dataclass(frozen=True)
class TurnRefresh:
    """When Chrome refreshes what it holds on a TURN server (libwebrtc ``turn_port.cc``),
    instead of aioice's own times (the allocation at 5/6 of its lifetime, channels at 500 s, no
    CreatePermission). Only a long call or a kept peer connection idle for minutes
    (docs/persistent.md) lives long enough to see one."""

    #: ``TurnPort::ScheduleRefresh``: the Refresh is sent ``TURN_REFRESH_MARGIN`` (60 s)
    #: before the lifetime the server granted ends
    allocation_margin: float = 60.0
    #: ``TURN_PERMISSION_TIMEOUT`` 5 min, CreatePermission resent 1 min before it ends
    permission: float = 240.0
    #: ``TURN_CHANNEL_BINDING_TIMEOUT`` 10 min, ChannelBind resent 1 min before it ends
    channel: float = 540.0

    def allocation(self, lifetime: float) -> float:
        return max(lifetime - self.allocation_margin, 1.0)


CHROME_TURN = TurnRefresh()


class _Scheduled:
    """Mixin: STUN requests on a retransmission schedule, every send reported; refreshes on
    Chrome's schedule (:data:`CHROME_TURN`)."""

    schedule: RetransmitSchedule = CHROME
    reliable = False
    ignore_unauthenticated_errors = False
    on_send: Callable[[str, int], None] | None = None
    on_ignored: Callable[[str, int], None] | None = None

    async def request(self, request: stun.Message) -> tuple[stun.Message, tuple[str, int]]:
        if self.integrity_key:
            # long-term credentials (RFC 8489 section 9.2.4)
            request.attributes["USERNAME"] = self.username
            request.attributes["NONCE"] = self.nonce
            request.attributes["REALM"] = self.realm
            request.add_message_integrity(self.integrity_key)
        method = request.message_method.name
        tx = ScheduledTransaction(
            request, self.server, self, self.schedule, reliable=self.reliable,
            integrity_key=self.integrity_key, long_term_credential=True,
            ignore_unauthenticated_errors=self.ignore_unauthenticated_errors,
            on_send=(lambda n: self.on_send(method, n)) if self.on_send else None,
            on_ignored=(lambda code: self.on_ignored(method, code)) if self.on_ignored else None)
        self.transactions[request.transaction_id] = tx
        try:
            return await tx.run()
        finally:
            del self.transactions[request.transaction_id]


    refresh_schedule: TurnRefresh = CHROME_TURN
    permission_task: asyncio.Task | None = None

    async def connect(self) -> tuple[str, int]:
        relayed = await super().connect()
        self.permission_task = asyncio.ensure_future(self.refresh_permissions())
        return relayed

    async def refresh(self, time_to_expiry: int) -> None:
        """aioice's refresh loop on Chrome's timing: ``lifetime - 60 s``, not 5/6 of it."""
        while True:
            await asyncio.sleep(self.refresh_schedule.allocation(time_to_expiry))
            request = stun.Message(message_method=stun.Method.REFRESH, message_class=stun.Class.REQUEST)
            request.attributes["LIFETIME"] = self.lifetime
            try:
                response, _ = await self.request_with_retry(request)
                if "LIFETIME" not in response.attributes:
                    raise ConnectionError("TURN refresh response is missing LIFETIME")
            except (ConnectionError, stun.TransactionError):
                # the allocation is gone: stop using it, as aioice does
                self.transport.close()
                return
            time_to_expiry = response.attributes["LIFETIME"]

    async def refresh_permissions(self) -> None:
        """Chrome keeps a CreatePermission per peer besides the channel binding (``TurnEntry``):
        every :attr:`TurnRefresh.permission` seconds. aioice relies on ChannelBind alone, which
        a server that times permissions at 300 s does not accept as a refresh of them."""
        while True:
            await asyncio.sleep(self.refresh_schedule.permission)
            if self.transport is None or self.transport.is_closing():
                return          # the allocation was given up (a failed refresh closes it)
            for addr in list(self.peer_to_channel):
                request = stun.Message(message_method=stun.Method.CREATE_PERMISSION,
                                       message_class=stun.Class.REQUEST)
                request.attributes["XOR-PEER-ADDRESS"] = addr
                try:
                    await self.request_with_retry(request)
                except (ConnectionError, stun.TransactionError):
                    pass        # the next ChannelBind or Send tells; Chrome prunes the connection

    async def delete(self) -> None:
        if self.permission_task is not None:
            self.permission_task.cancel()
            self.permission_task = None
        await super().delete()


class ScheduledTurnUdp(_Scheduled, turn.TurnClientUdpProtocol):
    pass


class ScheduledTurnTcp(_Scheduled, turn.TurnClientTcpProtocol):
    reliable = True


class _Stamped:
    """The receiver of a relay's datagrams, stamping when the last one came (the browser's
    ``Connection::last_received()``: what its ICE connection state is judged on)."""

    def __init__(self, protocol: Any, relay: "RelayTransport"):
        self._protocol = protocol
        self._relay = relay

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self._relay.last_received = asyncio.get_running_loop().time()
        self._protocol.datagram_received(data, addr)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._protocol, name)


class RelayTransport:
    """Datagram transport relayed through one TURN allocation (what aioice's
    ``TurnTransport`` does, composed from the client's public methods)."""

    def __init__(self, client: Any, relayed: tuple[str, int], mapped: tuple[str, int] | None):
        self.client = client
        self.relayed = relayed
        self.mapped = mapped
        self._tasks: set[asyncio.Task] = set()
        self._closing = False
        self.packets_sent = 0   # datagrams sent through the allocation: which relay carried the media
        self.last_received: float | None = None     # loop time of the last datagram from a peer

    def attach(self, protocol: asyncio.DatagramProtocol) -> None:
        self.client.receiver = _Stamped(protocol, self)
        protocol.connection_made(self)  # type: ignore[arg-type]

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"sockname": self.relayed, "related_address": self.mapped}.get(name, default)

    def is_closing(self) -> bool:
        return self._closing or self.client.transport.is_closing()

    def sendto(self, data: bytes, addr: tuple[str, int]) -> None:
        if self.is_closing():
            return
        self.packets_sent += 1
        task = asyncio.ensure_future(self.client.send_data(data, addr))
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None and self.client.receiver is not None:
            self.client.receiver.error_received(task.exception())

    def close(self) -> None:
        if self._closing:
            return
        self._closing = True
        asyncio.ensure_future(self._close())

    async def _close(self) -> None:
        try:
            await self.client.delete()
        finally:
            for t in self._tasks:
                t.cancel()


@dataclass(frozen=True)
class TurnURL:
    """One TURN URL of iceServers (RFC 7065): ``turn:`` / ``turns:``, host, port, transport."""

    url: str
    secure: bool
    host: str
    port: int
    transport: str  # udp | tcp

    @classmethod
    def parse(cls, url: str) -> "TurnURL":
        scheme, _, rest = url.partition(":")
        if scheme not in ("turn", "turns"):
            raise ValueError(f"{url}: not a turn: or turns: URL")
        hostport, _, query = rest.partition("?")
        secure = scheme == "turns"
        transport = "tcp" if secure else "udp"
        for part in filter(None, query.split("&")):
            k, _, v = part.partition("=")
            if k == "transport":
                if v not in ("udp", "tcp"):
                    raise ValueError(f"{url}: transport must be udp or tcp")
                transport = v
        if secure and transport == "udp":
            raise ValueError(f"{url}: turns: over udp (DTLS) is not supported by browsers")
        if hostport.startswith("["):
            host, _, port_s = hostport[1:].partition("]")
            port_s = port_s.lstrip(":")
        else:
            host, _, port_s = hostport.partition(":")
        port = int(port_s) if port_s else (5349 if secure else 3478)
        return cls(url, secure, host, port, transport)

    @property
    def label(self) -> str:
        return f"{'turns' if self.secure else 'turn'}:{self.host}:{self.port}/{self.transport}"


async def allocate(url: TurnURL, username: str, password: str, *, schedule: RetransmitSchedule = CHROME,
                   ssl: ssl_mod.SSLContext | None = None, lifetime: int = turn.DEFAULT_ALLOCATION_LIFETIME,
                   on_send: Callable[[str, int], None] | None = None,
                   ignore_unauthenticated_errors: bool = False,
                   on_ignored: Callable[[str, int], None] | None = None) -> RelayTransport:
    """Open the transport to the TURN server and allocate a relayed address (RFC 8656
    section 7.1). Raises ``stun.TransactionError`` or ``OSError``; closes the socket then.
    ``ignore_unauthenticated_errors``: Chrome's reaction to an error other than 401 before
    authentication (keep retransmitting); without it the allocation fails, as aioice's does."""
    loop = asyncio.get_running_loop()
    addr = (url.host, url.port)

    def make(cls):
        def factory():
            p = cls(addr, username=username, password=password, lifetime=lifetime,
                    channel_refresh_time=int(CHROME_TURN.channel))
            p.schedule = schedule
            p.on_send = on_send
            p.ignore_unauthenticated_errors = ignore_unauthenticated_errors
            p.on_ignored = on_ignored
            return p
        return factory

    if url.transport == "tcp":
        if url.secure and ssl is None:
            ssl = ssl_mod.create_default_context()
        transport, client = await loop.create_connection(
            make(ScheduledTurnTcp), host=url.host, port=url.port, ssl=ssl if url.secure else None)
    else:
        transport, client = await loop.create_datagram_endpoint(make(ScheduledTurnUdp), remote_addr=addr)
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, UDP_SOCKET_BUFFER_SIZE)
    try:
        relayed = await client.connect()
    except BaseException:
        transport.close()
        raise
    return RelayTransport(client, relayed, client.mapped_address)
