"""NFQUEUE over nfnetlink, in pure Python: packets wait in the kernel, we send verdicts.

The kernel keeps each queued packet and sends us a small message (its id, its length and
the first bytes we ask for); the packet continues only when we answer with a verdict
(``NF_ACCEPT``) or is freed when we say ``NF_DROP``. Verdicts may come in any order and
much later, which is all a delay line needs: no payload crosses to userspace and back.

Wire format: ``linux/netfilter/nfnetlink_queue.h`` (NFQNL_MSG_CONFIG, NFQNL_MSG_PACKET,
NFQNL_MSG_VERDICT). One socket can serve many queues; each queue number belongs to one
network namespace, the one the socket was created in.
"""

from __future__ import annotations

import os
import select
import socket
import struct
from lab.core.errors import LabError

NETLINK_NETFILTER = 12
SOL_NETLINK = 270
NETLINK_NO_ENOBUFS = 5
NFNL_SUBSYS_QUEUE = 3
NFQNL_MSG_PACKET, NFQNL_MSG_VERDICT, NFQNL_MSG_CONFIG = 0, 1, 2
NLM_F_REQUEST, NLM_F_ACK = 1, 4
NLMSG_ERROR = 2

NFQA_CFG_CMD, NFQA_CFG_PARAMS, NFQA_CFG_QUEUE_MAXLEN, NFQA_CFG_MASK, NFQA_CFG_FLAGS = 1, 2, 3, 4, 5
NFQNL_CFG_CMD_BIND, NFQNL_CFG_CMD_UNBIND = 1, 2
NFQNL_COPY_META, NFQNL_COPY_PACKET = 1, 2
NFQA_PACKET_HDR, NFQA_VERDICT_HDR, NFQA_PAYLOAD, NFQA_CAP_LEN = 1, 2, 10, 13
NF_DROP, NF_ACCEPT = 0, 1

_HDR = struct.Struct("=IHHII")           # nlmsghdr
_NFGEN = struct.Struct("!BBH")            # nfgenmsg: family, version, res_id (queue number)
_ATTR = struct.Struct("=HH")
_VERDICT_LEN = _HDR.size + _NFGEN.size + 4 + 8
_VERDICT_TYPE = (NFNL_SUBSYS_QUEUE << 8) | NFQNL_MSG_VERDICT


def _attr(kind: int, payload: bytes) -> bytes:
    n = _ATTR.size + len(payload)
    return _ATTR.pack(n, kind) + payload + b"\0" * (-n % 4)


def _message(msg: int, queue: int, attrs: bytes, flags: int = NLM_F_REQUEST, family: int = socket.AF_UNSPEC) -> bytes:
    body = _NFGEN.pack(family, 0, queue) + attrs
    return _HDR.pack(_HDR.size + len(body), (NFNL_SUBSYS_QUEUE << 8) | msg, flags, 0, 0) + body


class NFQueueError(LabError, OSError):
    pass


class NFQueueSocket:
    """One nfnetlink socket; ``bind`` it to queue numbers, ``read`` packets, ``verdict``."""

    def __init__(self, rcvbuf: int = 16 << 20):
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, 33, rcvbuf)       # SO_RCVBUFFORCE (root)
        except OSError:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.setsockopt(SOL_NETLINK, NETLINK_NO_ENOBUFS, 1)
        self.sock.bind((0, 0))
        self._buf = bytearray(1 << 16)
        self._out = bytearray()
        self._pending: list[bytes] = []

    def fileno(self) -> int:
        return self.sock.fileno()

    def close(self) -> None:
        self.sock.close()

    def _request(self, data: bytes) -> None:
        """Send a config request and wait for the kernel's answer (errors are raised).
        Packets of queues already bound may arrive meanwhile: they are kept for ``read``."""
        self.sock.setblocking(True)
        try:
            self.sock.send(data)
            while True:
                n = self.sock.recv_into(self._buf)
                off = 0
                while off + 16 <= n:
                    length, kind = struct.unpack_from("=IH", self._buf, off)
                    if length < 16:
                        break
                    if kind == NLMSG_ERROR:
                        err = struct.unpack_from("=i", self._buf, off + _HDR.size)[0]
                        if err:
                            raise NFQueueError(-err, f"nfqueue config: {os.strerror(-err)}")
                        return
                    self._pending.append(bytes(self._buf[off:off + length]))
                    off += (length + 3) & ~3
        finally:
            self.sock.setblocking(False)

    def bind(self, queue: int, copy_range: int = 0, maxlen: int = 65536) -> None:
        """Bind ``queue``. ``copy_range`` bytes of each packet are copied to us (0: none,
        only the metadata and the packet length)."""
        ack = NLM_F_REQUEST | NLM_F_ACK
        self._request(_message(NFQNL_MSG_CONFIG, queue,
                               _attr(NFQA_CFG_CMD, struct.pack("!BxH", NFQNL_CFG_CMD_BIND, socket.AF_INET)), ack))
        self.set_copy(queue, copy_range)
        self._request(_message(NFQNL_MSG_CONFIG, queue, _attr(NFQA_CFG_QUEUE_MAXLEN, struct.pack("!I", maxlen)), ack))

    def set_copy(self, queue: int, copy_range: int) -> None:
        # COPY_PACKET with a small range still tells us the length (NFQA_CAP_LEN); range 0
        # would mean "everything" to the kernel, so "nothing" is one byte.
        params = struct.pack("!IB", max(1, copy_range), NFQNL_COPY_PACKET)
        self._request(_message(NFQNL_MSG_CONFIG, queue, _attr(NFQA_CFG_PARAMS, params), NLM_F_REQUEST | NLM_F_ACK))

    def unbind(self, queue: int) -> None:
        self._request(_message(NFQNL_MSG_CONFIG, queue,
                               _attr(NFQA_CFG_CMD, struct.pack("!BxH", NFQNL_CFG_CMD_UNBIND, socket.AF_INET)),
                               NLM_F_REQUEST | NLM_F_ACK))

    def has_pending(self) -> bool:
        """Packets read while waiting for a configuration answer, not yet given to ``read``."""
        return bool(self._pending)

    def read(self):
        """Yield (queue, packet_id, length, payload-or-None) for every packet waiting, without blocking."""
        while self._pending:
            data = self._pending.pop(0)
            yield from _parse(data, len(data))
        buf, recv_into = self._buf, self.sock.recv_into
        while True:
            try:
                n = recv_into(buf)
            except BlockingIOError:
                return
            yield from _parse(buf, n)

    def verdict(self, queue: int, packet_id: int, verdict: int) -> None:
        """Add a verdict to the batch sent by ``flush``."""
        self._out += _pack_verdict(queue, packet_id, verdict)

    def flush(self) -> None:
        """Send every verdict added since the last flush in one datagram: the kernel reads
        the messages one after the other (netlink_rcv_skb)."""
        out = self._out
        while out:
            chunk = out[:_VERDICT_LEN * 2000]
            try:
                self.sock.send(chunk)
            except BlockingIOError:
                select.select([], [self.sock], [], 0.01)
                continue
            del out[:len(chunk)]


def _pack_verdict(queue: int, packet_id: int, verdict: int) -> bytes:
    return (_HDR.pack(_VERDICT_LEN, _VERDICT_TYPE, NLM_F_REQUEST, 0, 0) + _NFGEN.pack(0, 0, queue)
            + _ATTR.pack(12, NFQA_VERDICT_HDR) + struct.pack("!II", verdict, packet_id))


_PACKET_TYPE = (NFNL_SUBSYS_QUEUE << 8) | NFQNL_MSG_PACKET


def _parse(buf, n: int):
    """The packet messages in ``buf[:n]`` (one datagram may carry several)."""
    unpack_from = struct.unpack_from
    off = 0
    while off + 16 <= n:
        length, kind = unpack_from("=IH", buf, off)
        if length < 16:
            return
        if kind == _PACKET_TYPE:
            queue = unpack_from("!H", buf, off + 18)[0]
            pid = size = -1
            payload = None
            a = off + 20
            end = off + length
            while a + 4 <= end:
                alen, atype = unpack_from("=HH", buf, a)
                if alen < 4:
                    break
                atype &= 0x3fff
                if atype == NFQA_PACKET_HDR:
                    pid = unpack_from("!I", buf, a + 4)[0]
                elif atype == NFQA_PAYLOAD:
                    payload = bytes(buf[a + 4:a + alen])
                    if size < 0:
                        size = alen - 4
                elif atype == NFQA_CAP_LEN:
                    size = unpack_from("!I", buf, a + 4)[0]
                a += (alen + 3) & ~3
            yield queue, pid, size, payload
        off += (length + 3) & ~3
