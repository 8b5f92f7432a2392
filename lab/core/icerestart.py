"""An ICE restart (RFC 8445 section 9) under an existing aiortc ``RTCIceTransport``.

aiortc 1.16 cannot restart ICE: an ``RTCIceTransport`` owns one ``aioice.Connection`` for
its life, and a new transport would mean a new ``RTCDtlsTransport``, that is a new DTLS
handshake and new SRTP keys, where a browser's restart keeps both (only the ICE credentials
and candidates change, the DTLS role and fingerprint stay). So the restart is done by
swapping the Connection under the transport:

- the DTLS transport reads ``transport._recv()`` and writes ``transport._send()``, looked up
  on every datagram; the first restart points both at the transport itself: reads come from
  one inbox that every Connection of the transport feeds (the first one's ``_queue``, on which
  the DTLS read already pending waits), writes go to the current Connection;
- the new Connection is gathered by the caller, then checks with the new remote credentials
  and candidates while the old one keeps the selected pair (as a browser keeps sending on it
  until a new pair is writable);
- once the new one is connected it becomes the transport's (and its gatherer's), the
  transport's state watcher follows it, and the old one is closed with a private queue, so
  that its closing does not end the DTLS read. A restart that fails closes the new one and
  leaves everything as it was.

Both the media edge (controlled) and the emulated softphone (controlling) use it; the new
Connection must have the old one's role.
"""

from __future__ import annotations

import asyncio
from typing import Any, Callable

from aioice import Candidate, Connection
from aiortc import RTCIceParameters, RTCIceTransport


#: seconds the old Connection is given to close after the swap
CLOSE_OLD_WITHIN = 5.0


class IceRestartFailed(ConnectionError):
    """The new Connection found no working pair: the old one is kept."""


def _install(transport: RTCIceTransport, on_datagram: Callable[[tuple], None] | None) -> asyncio.Queue:
    inbox = getattr(transport, "_restart_inbox", None)
    if inbox is not None:
        return inbox
    inbox = transport._connection._queue
    transport._restart_inbox = inbox
    transport._restarting = False

    async def recv() -> bytes:
        item = await inbox.get()
        if item is None:
            raise ConnectionError("Connection lost while receiving data")
        if on_datagram is not None:
            on_datagram(item)
        return item[0]

    async def send(data: bytes) -> None:
        try:
            await transport._connection.send(data)
        except ConnectionError:
            # no selected pair while the restart runs: dropped, as a browser drops what its
            # transport cannot send; an error would end aiortc's RTP sender for good
            if not transport._restarting:
                raise

    transport._recv = recv
    transport._send = send
    return inbox


async def restart(transport: RTCIceTransport, connection: Connection, remote: RTCIceParameters,
                  candidates: list[Candidate], *, timeout: float | None = None,
                  on_datagram: Callable[[tuple], None] | None = None) -> None:
    """Check ``connection`` (gathered, with the transport's role) against the new remote
    credentials and ``candidates``; when it connects, put it under ``transport`` in place of
    the old one. :class:`IceRestartFailed` (the old one kept) when no pair works within
    ``timeout``. ``on_datagram(item)`` sees every queued datagram (the agent times arrivals)."""
    if connection.ice_controlling != transport._connection.ice_controlling:
        raise ValueError("the new ICE connection must keep the transport's role")
    inbox = _install(transport, on_datagram)
    connection._queue = inbox
    connection.remote_username = remote.usernameFragment
    connection.remote_password = remote.password
    connection.remote_is_lite = remote.iceLite
    for c in candidates:
        await connection.add_remote_candidate(c)
    await connection.add_remote_candidate(None)
    transport._restarting = True
    try:
        await asyncio.wait_for(connection.connect(), timeout)
    except BaseException as exc:
        # failed, timed out or cancelled (the call ended): the new one goes, the old stays
        connection._queue = asyncio.Queue()
        try:
            await asyncio.shield(asyncio.wait_for(connection.close(), CLOSE_OLD_WITHIN))
        except (asyncio.TimeoutError, asyncio.CancelledError):
            pass
        if isinstance(exc, (ConnectionError, asyncio.TimeoutError)):
            raise IceRestartFailed(f"ICE restart: no working pair ({type(exc).__name__})") from None
        raise
    finally:
        transport._restarting = False
    old = transport._connection
    monitor = transport._RTCIceTransport__monitor_task
    if monitor is not None:
        # it waits on the old Connection's events, and would take its closing for a failure
        monitor.cancel()
    transport._connection = connection
    transport.iceGatherer._connection = connection
    transport._RTCIceTransport__monitor_task = asyncio.ensure_future(transport._monitor())
    old._queue = asyncio.Queue()
    # in the background and bounded: a protocol over a transport that never reports its loss
    # (the emulated browser's TURN allocations) would keep close() waiting for ever
    task = asyncio.ensure_future(asyncio.wait_for(old.close(), CLOSE_OLD_WITHIN))
    task.add_done_callback(lambda t: t.cancelled() or t.exception())


def parameters(ufrag: str, pwd: str) -> RTCIceParameters:
    return RTCIceParameters(usernameFragment=ufrag, password=pwd)


def remote_candidates(wire: list[dict[str, Any]]) -> list[Candidate]:
    """The invite's or answer's ``candidates`` (``{"candidate": "candidate:..."}``) as aioice's."""
    out = []
    for c in wire:
        text = str(c.get("candidate", ""))
        out.append(Candidate.from_sdp(text.split(":", 1)[1] if text.startswith("candidate:") else text))
    return out
