"""Sockets: the UDP, TCP and TLS listeners (RFC 8656 section 3.1), relay sockets, the
control socket. UDP and relay sockets are read straight from the event loop's reader
callbacks (no per-datagram objects): the relay's packet rate depends on it.
"""

from __future__ import annotations

import asyncio
import errno
import select
import socket
import ssl
import struct

from lab.core import stun
from lab.core.control import Channel, serve_unix
from .config import TurnConfig
from .faults import ControlRequest
from .server import TurnServer

MAX_TCP_BUFFER = 1 << 17      # a client that sends more than this unframed is cut off


class UdpOut:
    """A UDP listener's answers while it works through a burst of requests: held and sent
    together at the end of the burst. A client asleep in epoll is woken by the first one
    and is still busy when the next ones arrive; sent one by one between requests, every
    answer would pay a wake-up (on a VM an inter-processor interrupt, several times the
    cost of the send itself). Outside a burst (relayed data, delayed answers) ``batch``
    is None and answers go at once."""

    __slots__ = ("sock", "batch")

    def __init__(self, sock):
        self.sock = sock
        self.batch: list | None = None

    def flush(self) -> None:
        batch, self.batch = self.batch, None
        sendto = self.sock.sendto
        for data, addr in batch or ():
            try:
                sendto(data, addr)
            except OSError:
                pass        # a full buffer or an unreachable client: UDP may lose it


class UdpConn:
    __slots__ = ("transport", "client", "local", "key", "_out")

    def __init__(self, out: UdpOut, client, local):
        self.transport = "udp"
        self.client = client
        self.local = local
        self.key = ("udp", client, local)
        self._out = out

    def send(self, data: bytes) -> None:
        out = self._out
        if out.batch is not None:
            out.batch.append((data, self.client))
            return
        try:
            out.sock.sendto(data, self.client)
        except OSError:
            pass        # a full buffer or an unreachable client: UDP may lose it


class StreamConn(asyncio.Protocol):
    """One TCP or TLS client connection: RFC 8656 section 12.5 framing (STUN by its
    length, ChannelData by its length padded to 4)."""

    def __init__(self, server: TurnServer, transport_name: str):
        self.server = server
        self.transport = transport_name
        self.buf = bytearray()
        self.tr = None
        self.client = self.local = self.key = None

    def connection_made(self, tr):
        self.tr = tr
        self.client = tr.get_extra_info("peername")[:2]
        self.local = tr.get_extra_info("sockname")[:2]
        self.key = (self.transport, self.client, self.local, id(self))

    def send(self, data: bytes) -> None:
        if self.tr is not None and not self.tr.is_closing():
            self.tr.write(data)

    def data_received(self, data: bytes) -> None:
        buf = self.buf
        buf += data
        while len(buf) >= 4:
            first = buf[0]
            if first < 0x40:
                if len(buf) < stun.HEADER:
                    break
                n = stun.HEADER + struct.unpack_from("!H", buf, 2)[0]
            elif first <= 0x7F:
                ln = struct.unpack_from("!H", buf, 2)[0]
                n = 4 + ln + (-ln % 4)
            else:
                # neither STUN nor ChannelData: the framing is lost for good
                self.tr.close()
                buf.clear()
                return
            if n > MAX_TCP_BUFFER:
                self.tr.close()
                buf.clear()
                return
            if len(buf) < n:
                break
            msg = bytes(buf[:n])
            del buf[:n]
            try:
                self.server.on_client(msg, self)
            except Exception as exc:     # never let one message stop the server
                print(f"turn: error on a message from {self.client}: {exc!r}", flush=True)
        if len(buf) > MAX_TCP_BUFFER:
            self.tr.close()
            buf.clear()

    def connection_lost(self, exc):
        self.server.connection_lost(self)
        self.tr = None


class Relays:
    """Relay sockets for TurnServer: UDP, non-blocking, in one epoll set of their own that
    the event loop watches as a single reader. Adding a relay is one ``epoll_ctl`` and a
    dict entry (no asyncio handle and selector key per socket, which cost as much as the
    rest of an Allocate), and one wake-up serves every relay that has data."""

    def __init__(self, server_ref, loop):
        self.loop = loop
        self.server: TurnServer = server_ref
        self.epoll = select.epoll()
        self.by_fd: dict[int, tuple] = {}       # fd -> (socket, allocation)
        loop.add_reader(self.epoll.fileno(), self._ready)

    def open(self, ip: str, port: int):
        """The relay socket on ``port``; None when the port is taken (another program holds
        it: the pool tries the next one). Anything else (socket() out of descriptors or
        memory, the relay address gone) raises OSError: the server answers 508 and the
        port stays in the pool."""
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM | socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC)
        try:
            s.bind((ip, port))
        except OSError as exc:
            s.close()
            if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                return None
            raise
        return s

    def attach(self, sock, alloc) -> None:
        fd = sock.fileno()
        self.by_fd[fd] = (sock, alloc)
        self.epoll.register(fd, select.EPOLLIN)

    def _ready(self) -> None:
        on_peer = self.server.on_peer
        by_fd = self.by_fd
        for fd, _ in self.epoll.poll(0, 256):
            entry = by_fd.get(fd)
            if entry is None:
                continue
            sock, alloc = entry
            recv = sock.recvfrom
            for _ in range(64):     # level-triggered: what is left wakes the loop again
                try:
                    data, peer = recv(65536)
                except OSError:     # BlockingIOError (drained) or an ICMP error
                    break
                on_peer(alloc, data, peer)

    def send(self, sock, data: bytes, peer) -> None:
        try:
            sock.sendto(data, peer)
        except OSError:
            pass

    def close(self, sock) -> None:
        fd = sock.fileno()
        if self.by_fd.pop(fd, None) is not None:
            try:
                self.epoll.unregister(fd)
            except OSError:
                pass
        sock.close()


class Service:
    """Everything one server process listens on."""

    def __init__(self, cfg: TurnConfig):
        self.cfg = cfg
        self.server = TurnServer(cfg)
        self.udp: dict[tuple, socket.socket] = {}
        self.stream_servers: list = []
        self.tls_ctx = None

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self.server.relays = Relays(self.server, loop)
        cfg = self.cfg
        ports = [cfg.udp_port] if cfg.udp_port else []
        ips = list(cfg.addresses)
        if cfg.alt_address and cfg.alt_port and cfg.udp_port:
            # RFC 5780 section 4: two addresses and two ports, all four combinations
            ports.append(cfg.alt_port)
            ips.append(cfg.alt_address)
            self.server.alt_sender = self._send_from
        for ip in ips:
            for port in ports:
                self._udp_listen(loop, ip, port)
        if cfg.tls_port and cfg.cert and cfg.key:
            self.tls_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            self.tls_ctx.load_cert_chain(cfg.cert, cfg.key)
        for ip in cfg.addresses:
            if cfg.tcp_port:
                self.stream_servers.append(await loop.create_server(
                    lambda: StreamConn(self.server, "tcp"), ip, cfg.tcp_port, reuse_address=True,
                    reuse_port=cfg.workers > 1))
            if cfg.tls_port:
                self._tls_listen(loop, ip, cfg.tls_port)
        if cfg.control:
            # the one control channel (lab.core.control): every request checked against
            # ControlRequest first; a bad one is answered with an error and changes nothing
            self.stream_servers.append(await serve_unix(cfg.control, Channel.single(ControlRequest, self._control)))
        loop.create_task(self._sweeper())

    def close(self) -> None:
        """Close every socket: for a server that stops while its process goes on (the RFC 5780
        responder of nat-check); the service process itself just exits."""
        loop = asyncio.get_running_loop()
        for s in self.udp.values():
            loop.remove_reader(s.fileno())
            s.close()
        self.udp.clear()
        for srv in self.stream_servers:
            srv.close()
        self.stream_servers.clear()
        relays = self.server.relays
        if relays is not None:
            for sock, _alloc in list(relays.by_fd.values()):
                sock.close()
            relays.by_fd.clear()
            loop.remove_reader(relays.epoll.fileno())
            relays.epoll.close()
        for _port, sock, _until in self.server.reserved.values():
            sock.close()
        self.server.reserved.clear()

    def _udp_listen(self, loop, ip: str, port: int) -> None:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if self.cfg.workers > 1:
            # the kernel hashes a client's 5-tuple to one worker, always the same one
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        for opt in (socket.SO_RCVBUF, socket.SO_SNDBUF):
            s.setsockopt(socket.SOL_SOCKET, opt, 1 << 21)
        s.bind((ip, port))
        s.setblocking(False)
        local = s.getsockname()[:2]
        self.udp[local] = s
        conns: dict = {}
        on_client = self.server.on_client
        channel_data = self.server._channel_data
        recvfrom = s.recvfrom
        out = UdpOut(s)

        def readable():
            # up to 256 datagrams per wake-up: the event loop's own cost per wake-up is
            # several times that of a relayed packet
            out.batch = []
            try:
                for _ in range(256):
                    try:
                        data, addr = recvfrom(65536)
                    except OSError:     # BlockingIOError (drained) or an ICMP error
                        break
                    c = conns.get(addr)
                    if c is None:
                        if len(conns) > 100000:
                            conns.clear()
                        c = conns[addr] = UdpConn(out, addr, local)
                    try:
                        if len(data) >= 4 and 0x40 <= data[0] <= 0x7F:     # ChannelData: the relay's hot path
                            channel_data(data, c)
                        else:
                            on_client(data, c)
                    except Exception as exc:     # never let one message stop the server
                        print(f"turn: error on a message from {addr}: {exc!r}", flush=True)
            finally:
                out.flush()
        loop.add_reader(s.fileno(), readable)

    def _send_from(self, src, data: bytes, client) -> None:
        s = self.udp.get(tuple(src))
        if s is not None:
            try:
                s.sendto(data, client)
            except OSError:
                pass

    def _tls_listen(self, loop, ip: str, port: int) -> None:
        """TLS and plain TCP on one port (coturn's ``tls-listening-port``): a TLS
        ClientHello starts with 0x16, STUN with 0x00 or 0x01."""
        ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if self.cfg.workers > 1:
            ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        ls.bind((ip, port))
        ls.listen(512)
        ls.setblocking(False)
        self.stream_servers.append(ls)

        async def serve(conn: socket.socket):
            try:
                fut = loop.create_future()
                loop.add_reader(conn.fileno(), lambda: fut.done() or fut.set_result(None))
                try:
                    await asyncio.wait_for(fut, 10)
                finally:
                    loop.remove_reader(conn.fileno())
                first = conn.recv(1, socket.MSG_PEEK)
                if not first:
                    conn.close()
                    return
                if first[0] == 0x16 and self.tls_ctx is not None:
                    await loop.connect_accepted_socket(lambda: StreamConn(self.server, "tls"), conn,
                                                       ssl=self.tls_ctx, ssl_handshake_timeout=10)
                else:
                    await loop.connect_accepted_socket(lambda: StreamConn(self.server, "tcp"), conn)
            except (OSError, asyncio.TimeoutError, ssl.SSLError):
                conn.close()

        async def accept():
            while True:
                try:
                    conn, _ = await loop.sock_accept(ls)
                except OSError:
                    await asyncio.sleep(0.01)
                    continue
                conn.setblocking(False)
                loop.create_task(serve(conn))
        loop.create_task(accept())

    def _control(self, req: ControlRequest) -> dict:
        return self.server.control(req.model_dump(exclude_unset=True))

    async def _sweeper(self) -> None:
        while True:
            await asyncio.sleep(0.2)      # also bounds how late the transaction log is written
            self.server.sweep()
