"""The STUN/TURN request processing (RFC 8489 sections 6.3 and 9.2, RFC 8656 sections
7-12, RFC 5780 section 6): messages in, messages out. Sockets live in transports.py;
it calls ``on_client`` for what a client sends and ``on_peer`` for what reaches a relay.
"""

from __future__ import annotations

import asyncio
import os
import struct
import time

from lab.core import stun
from .auth import Credentials
from .config import TurnConfig
from .faults import Faults
from .log import TransactionLog
from .turn import CHANNEL_MAX, CHANNEL_MIN, Allocation, Allocations, CapacityError, PeerACL, PortPool
from lab.core.errors import LabError

UDP = 17   # REQUESTED-TRANSPORT value (RFC 8656 section 14.7)
_unpack_hh = struct.Struct("!HH").unpack_from
_pack_hh = struct.Struct("!HH").pack


class Reject(LabError):
    def __init__(self, code: int, attrs: list | None = None):
        self.code = code
        self.attrs = attrs or []


class TurnServer:
    """The protocol engine. ``relays`` opens relay sockets: ``relays.open(port) ->
    socket or None`` and ``relays.close(sock)``; a Conn has ``transport``, ``client``,
    ``local``, ``key`` and ``send(bytes)``."""

    def __init__(self, cfg: TurnConfig, relays=None):
        self.cfg = cfg
        self.relays = relays
        self.creds = Credentials(cfg.realm, cfg.users, cfg.secret, cfg.nonce_lifetime)
        self.acl = PeerACL(cfg.allowed_peers, cfg.denied_peers, cfg.allow_loopback)
        self.allocs = Allocations(PortPool(cfg.min_port, cfg.max_port))
        self.faults = Faults.from_dict(cfg.faults)
        self.log = TransactionLog(cfg.log)
        self.relay_ip = cfg.relay_address or cfg.addresses[0]
        self.reserved: dict[bytes, tuple] = {}   # RESERVATION-TOKEN -> (port, socket, until)
        self.alt_sender = None      # set by transports when RFC 5780 is on: (src addr) -> send
        self.stats = {"requests": 0, "relayed_in": 0, "relayed_out": 0, "discarded": 0}
        self._realm = cfg.realm.encode()
        self._next_sweep = 0.0          # permissions and channels: see sweep()
        self._handlers = {stun.ALLOCATE: self._allocate, stun.REFRESH: self._refresh,
                          stun.CREATE_PERMISSION: self._create_permission, stun.CHANNEL_BIND: self._channel_bind}

    # -- from clients ------------------------------------------------------------------

    def on_client(self, data: bytes, conn) -> None:
        """One STUN message or ChannelData message from a client (framed already)."""
        if len(data) >= 4 and 0x40 <= data[0] <= 0x7F:     # stun.is_channel_data
            self._channel_data(data, conn)
            return
        try:
            msg = stun.parse(data)
        except stun.ParseError:
            self.stats["discarded"] += 1
            return
        if msg.cls == stun.REQUEST:
            self._request(msg, conn)
        elif msg.cls == stun.INDICATION and msg.method == stun.SEND:
            self._send_indication(msg, conn)
        else:
            self.stats["discarded"] += 1      # responses and other indications: not for us

    def _request(self, msg: stun.Message, conn) -> None:
        started = time.monotonic()
        self.stats["requests"] += 1
        name = msg.name
        key = None
        user = None
        try:
            known = stun.KNOWN_REQUIRED
            for t, _ in msg.attrs:
                if t < 0x8000 and t not in known:
                    unknown = [t for t, _ in msg.attrs if t < 0x8000 and t not in known]
                    # RFC 8489 section 6.3.1.1: 420 listing them
                    raise Reject(420, [(stun.UNKNOWN_ATTRIBUTES,
                                        b"".join(struct.pack("!H", t) for t in unknown[:32]))])
            if self.faults.error:
                code = self.faults.error_code(name, conn.transport)
                if code is not None:
                    raise Reject(code)
            if msg.method == stun.BINDING:
                attrs, src = self._binding(msg, conn)
                self._respond(msg, conn, stun.SUCCESS, attrs, None, started, "success", None, src=src)
                return
            handler = self._handlers.get(msg.method)
            if handler is None:
                raise Reject(400)
            username, key = self._authenticate(msg)
            user = username
            attrs = handler(msg, conn, username, key)
            if attrs is None:
                return          # answered already (a retransmitted Allocate)
            store = self.allocs.get(conn.key) if msg.method == stun.ALLOCATE else None
            self._respond(msg, conn, stun.SUCCESS, attrs, key, started, "success", None, user=user, store=store)
        except Reject as r:
            attrs = [(stun.ERROR_CODE, _error_code(r.code))] + r.attrs
            if r.code in (401, 438):
                attrs += [(stun.REALM, self._realm), (stun.NONCE, self.creds.nonce().encode())]
                key = None if r.code == 401 else key
            self._respond(msg, conn, stun.ERROR, attrs, key, started, "error", r.code, user=user)
        except stun.ParseError:
            self._respond(msg, conn, stun.ERROR, [(stun.ERROR_CODE, stun.error_code(400))], key,
                          started, "error", 400, user=user)

    def _respond(self, msg, conn, cls, attrs, key, started, outcome, code, src=None, user=None,
                 store: Allocation | None = None) -> bytes:
        out = stun.encode(msg.method, cls, msg.tid, attrs, key,
                          add_fingerprint=msg.fingerprinted or msg.method == stun.BINDING)
        if store is not None:
            store.response = out
        name, tr = msg.name, conn.transport
        user = user or None
        if self.faults.active:
            if self.faults.dropped(name, tr):
                self.log.write(conn.client, tr, name, "dropped", code, started, user)
                return out
            delay = self.faults.delay_s(name, tr)
            if delay > 0:
                def later():
                    self._send(conn, out, src)
                    self.log.write(conn.client, tr, name, outcome, code, started, user)
                asyncio.get_running_loop().call_later(delay, later)
                return out
        if src is None:
            conn.send(out)
        else:
            self._send(conn, out, src)
        self.log.write(conn.client, tr, name, outcome, code, started, user)
        return out

    def _send(self, conn, data: bytes, src=None) -> None:
        if src is not None and self.alt_sender is not None:
            self.alt_sender(src, data, conn.client)
        else:
            conn.send(data)

    # -- RFC 8489 section 9.2.4: long-term credentials --------------------------------

    def _authenticate(self, msg: stun.Message) -> tuple[str, bytes]:
        if msg.integrity_at is None:
            raise Reject(401)
        username, realm, nonce = msg.get(stun.USERNAME), msg.get(stun.REALM), msg.get(stun.NONCE)
        if username is None or realm is None or nonce is None:
            raise Reject(400)
        try:
            username_s, nonce_s = username.decode(), nonce.decode()
        except UnicodeDecodeError:
            raise Reject(400)
        if self.creds.nonce_state(nonce_s) != "ok":
            raise Reject(438)
        key = self.creds.key(username_s)
        if key is None or realm != self._realm or not stun.check_integrity(msg, key):
            raise Reject(401)
        return username_s, key

    # -- RFC 8489 section 7 / RFC 5780 section 6: Binding -------------------------------

    def _binding(self, msg, conn):
        attrs = [(stun.XOR_MAPPED_ADDRESS, stun.xor_address(conn.client, msg.tid)),
                 (stun.MAPPED_ADDRESS, stun.address(conn.client))]
        src = None
        if self.cfg.alt_address and self.cfg.alt_port and conn.transport == "udp":
            change = msg.get(stun.CHANGE_REQUEST)
            ip, port = conn.local
            if change is not None:
                flags = stun.read_u32(change)
                if flags & 4:
                    ip = self.cfg.alt_address if ip != self.cfg.alt_address else self.cfg.addresses[0]
                if flags & 2:
                    port = self.cfg.alt_port if port != self.cfg.alt_port else self.cfg.udp_port
                src = (ip, port)
            other = (self.cfg.alt_address if conn.local[0] != self.cfg.alt_address else self.cfg.addresses[0],
                     self.cfg.alt_port if conn.local[1] != self.cfg.alt_port else self.cfg.udp_port)
            attrs += [(stun.RESPONSE_ORIGIN, stun.address(src or conn.local)),
                      (stun.OTHER_ADDRESS, stun.address(other))]
        elif msg.has(stun.CHANGE_REQUEST):
            raise Reject(420, [(stun.UNKNOWN_ATTRIBUTES, struct.pack("!H", stun.CHANGE_REQUEST))])
        return attrs, src

    # -- RFC 8656 section 7.2: Allocate --------------------------------------------------

    def _allocate(self, msg, conn, username, key):
        now = time.monotonic()
        have = self.allocs.get(conn.key)
        if have is not None:
            if have.tid == msg.tid and have.response:
                conn.send(have.response)      # a retransmission: the same answer
                return None
            raise Reject(437)
        rt = msg.get(stun.REQUESTED_TRANSPORT)
        if rt is None or len(rt) != 4:
            raise Reject(400)
        if rt[0] != UDP:
            raise Reject(442)
        if msg.has(stun.RESERVATION_TOKEN) and msg.has(stun.EVEN_PORT):
            raise Reject(400)
        fam = msg.get(stun.REQUESTED_ADDRESS_FAMILY)
        if fam is not None and (len(fam) != 4 or fam[0] != 1):
            raise Reject(440)
        user = self.creds.user_of(username)
        if self.cfg.user_quota and self.allocs.per_user.get(user, 0) >= self.cfg.user_quota:
            raise Reject(486)
        if self.cfg.total_quota and len(self.allocs) >= self.cfg.total_quota:
            raise Reject(486)
        lifetime = self._lifetime(msg)
        even = msg.get(stun.EVEN_PORT)
        token = msg.get(stun.RESERVATION_TOKEN)
        extra = []
        if token is not None:
            # RFC 8656 section 7.2 step 4: the port an earlier EVEN-PORT (R=1) kept
            held = self.reserved.pop(token, None)
            if held is None or held[2] <= now:
                raise Reject(508)
            port, sock = held[0], held[1]
        else:
            try:
                port, sock = self.allocs.ports.take(lambda p: self._open_pair(p, even),
                                                    even=even is not None)
            except CapacityError:
                raise Reject(508)
            if isinstance(sock, tuple):
                sock, next_sock = sock
                tok = os.urandom(8)
                self.reserved[tok] = (port + 1, next_sock, now + 30)
                extra.append((stun.RESERVATION_TOKEN, tok))
        a = Allocation(conn.key, conn, username, user, key, (self.relay_ip, port), now + lifetime, msg.tid, sock=sock)
        self.allocs.add(a)
        self.relays.attach(sock, a)
        return [(stun.XOR_RELAYED_ADDRESS, stun.xor_address(a.relay, msg.tid)),
                (stun.LIFETIME, stun.u32(lifetime)),
                (stun.XOR_MAPPED_ADDRESS, stun.xor_address(conn.client, msg.tid))] + extra

    def _open_pair(self, port: int, even: bytes | None):
        """RFC 8656 section 14.6: EVEN-PORT with R=1 also keeps the next port."""
        sock = self.relays.open(self.relay_ip, port)
        if sock is None or not (even and even[0] & 0x80):
            return sock
        if not self.allocs.ports.claim(port + 1):
            self.relays.close(sock)
            return None
        nxt = self.relays.open(self.relay_ip, port + 1)
        if nxt is None:
            self.allocs.ports.give(port + 1)
            self.relays.close(sock)
            return None
        return sock, nxt

    def _lifetime(self, msg) -> int:
        """RFC 8656 section 7.2: the default unless more is asked, never above the cap;
        like coturn, never less than the default."""
        want = msg.get(stun.LIFETIME)
        lt = self.cfg.default_lifetime
        if want is not None:
            lt = max(stun.read_u32(want), self.cfg.default_lifetime)
        return min(lt, self.cfg.max_lifetime)

    # -- RFC 8656 section 8: Refresh ------------------------------------------------------

    def _refresh(self, msg, conn, username, key):
        a = self._mine(conn, username)
        want = msg.get(stun.LIFETIME)
        if want is not None and stun.read_u32(want) == 0:
            self._delete(a)
            return [(stun.LIFETIME, stun.u32(0))]
        lifetime = self._lifetime(msg)
        a.expires = time.monotonic() + lifetime
        return [(stun.LIFETIME, stun.u32(lifetime))]

    def _mine(self, conn, username) -> Allocation:
        a = self.allocs.get(conn.key)
        if a is None:
            raise Reject(437)
        if a.username != username:
            raise Reject(441)       # RFC 8656 section 6.1: same credentials as the Allocate
        return a

    # -- RFC 8656 section 9: CreatePermission ---------------------------------------------

    def _peers(self, msg) -> list[tuple[str, int]]:
        peers = [stun.parse_xor_address(v, msg.tid) for t, v in msg.attrs if t == stun.XOR_PEER_ADDRESS]
        if not peers:
            raise Reject(400)
        for p in peers:
            if ":" in p[0]:
                raise Reject(443)   # RFC 8656 section 9.2: peer address family mismatch
            if not self.acl.permits(p[0]):
                raise Reject(403)
        return peers

    def _permission_until(self, now: float) -> float:
        lt = self.faults.permission_lifetime
        return now + (lt if lt is not None else self.cfg.permission_lifetime)

    def _create_permission(self, msg, conn, username, key):
        a = self._mine(conn, username)
        peers = self._peers(msg)
        until = self._permission_until(time.monotonic())
        for ip, _ in peers:
            a.add_permission(ip, until)
        return []

    # -- RFC 8656 section 11: ChannelBind -------------------------------------------------

    def _channel_bind(self, msg, conn, username, key):
        a = self._mine(conn, username)
        ch = msg.get(stun.CHANNEL_NUMBER)
        if ch is None or len(ch) != 4:
            raise Reject(400)
        number = struct.unpack("!H", ch[:2])[0]
        if not CHANNEL_MIN <= number <= CHANNEL_MAX:
            raise Reject(400)
        peers = self._peers(msg)
        if len(peers) != 1:
            raise Reject(400)
        now = time.monotonic()
        if not a.bind_channel(number, peers[0], now + self.cfg.channel_lifetime):
            raise Reject(400)
        until = self._permission_until(now)
        if not self.cfg.strict_channel_permission and self.faults.permission_lifetime is None:
            # coturn gives the permission a ChannelBind installs the channel's lifetime;
            # aioice relies on it (it refreshes channels at 500 s and never sends
            # CreatePermission): RFC 8656's 300 s would cut its calls at ~330 s
            until = max(until, now + self.cfg.channel_lifetime)
        a.add_permission(peers[0][0], until)
        return []

    # -- RFC 8656 sections 10 and 12: data ----------------------------------------------

    def _send_indication(self, msg, conn) -> None:
        """RFC 8656 section 10.2: no permission, no allocation, no data: discard."""
        a = self.allocs.get(conn.key)
        if a is None or self.faults.stop_relay:
            return
        try:
            peer = stun.parse_xor_address(msg.get(stun.XOR_PEER_ADDRESS) or b"", msg.tid)
        except stun.ParseError:
            return
        data = msg.get(stun.DATA_ATTR)
        if data is None or not a.permitted(peer[0], time.monotonic()):
            return
        self.relays.send(a.sock, data, peer)
        self.stats["relayed_out"] += 1

    def _channel_data(self, data: bytes, conn) -> None:
        """RFC 8656 section 12.5: an unbound channel, or a short message, is discarded."""
        a = self.allocs.by_key.get(conn.key)
        if a is None or self.faults.stop_relay:
            return
        number, length = _unpack_hh(data)
        if 4 + length > len(data):
            return
        # the hot path of the relay: Allocation.channel_peer and .permitted, inlined
        ch = a.channels.get(number)
        if ch is None:
            return
        now = time.monotonic()
        peer = ch[0]
        if ch[1] <= now or a.permissions.get(peer[0], 0.0) <= now:
            return
        try:
            a.sock.sendto(data[4:4 + length], peer)
        except OSError:
            pass
        self.stats["relayed_out"] += 1

    def on_peer(self, a: Allocation, data: bytes, peer: tuple[str, int]) -> None:
        """RFC 8656 section 10.3 / 12.6: data from a permitted peer goes to the client,
        on its channel when it has one, in a Data indication otherwise."""
        now = time.monotonic()
        if a.permissions.get(peer[0], 0.0) <= now or self.faults.stop_relay:    # a.permitted, inlined
            return
        n = a.channel_of(peer, now)
        if n is not None:
            if a.key[0] == "udp":
                out = _pack_hh(n, len(data)) + data
            else:
                out = stun.channel_data(n, data, pad=True)
        else:
            tid = _tid()
            out = stun.encode(stun.DATA, stun.INDICATION, tid,
                              [(stun.XOR_PEER_ADDRESS, stun.xor_address(peer, tid)), (stun.DATA_ATTR, data)])
        a.conn.send(out)
        self.stats["relayed_in"] += 1

    # -- lifetimes ---------------------------------------------------------------------

    def sweep(self) -> None:
        """Every 200 ms (transports' sweeper): expired allocations and reservations go, the
        transaction log is written. Expired permissions and channels are only memory (every
        use checks their expiry): they are cleared once a second, which with 1,000
        allocations takes 40 % off the idle server's CPU (docs/benchmarks.md, soak)."""
        now = time.monotonic()
        for a in self.allocs.expired(now):
            self._delete(a)
        for tok in [t for t, r in self.reserved.items() if r[2] <= now]:
            port, sock, _ = self.reserved.pop(tok)
            self.allocs.ports.give(port)
            sock.close()
        if now >= self._next_sweep:
            self._next_sweep = now + 1.0
            for a in self.allocs.by_key.values():
                if a.permissions or a.channels:
                    a.sweep(now)
        self.log.flush()

    def _delete(self, a: Allocation) -> None:
        self.allocs.remove(a)
        self.relays.close(a.sock)

    def connection_lost(self, conn) -> None:
        """RFC 8656 section 3.1: over TCP/TLS the allocation ends with the connection."""
        a = self.allocs.get(conn.key)
        if a is not None:
            self._delete(a)

    # -- faults, live ------------------------------------------------------------------

    def control(self, req: dict) -> dict:
        self.log.flush()            # whoever asks may read the log next: nothing left in the buffer
        if "faults" in req:
            self.faults = Faults.from_dict(req["faults"])
        if req.get("expire_permissions"):
            for a in self.allocs.by_key.values():
                a.permissions.clear()
        if req.get("restart"):
            for a in list(self.allocs.by_key.values()):
                self._delete(a)
            self.creds.forget_nonces()
        now = time.monotonic()
        return {"ok": True, "allocations": len(self.allocs), "stats": dict(self.stats),
                "permissions": [exp - now for a in self.allocs.by_key.values() for exp in a.permissions.values()],
                "faults": {"drop": self.faults.drop, "delay": self.faults.delay, "error": self.faults.error,
                           "stop_relay": self.faults.stop_relay,
                           "permission_lifetime": self.faults.permission_lifetime}}


_error_codes: dict[int, bytes] = {}


def _error_code(code: int) -> bytes:
    """ERROR-CODE values, encoded once."""
    v = _error_codes.get(code)
    if v is None:
        v = _error_codes[code] = stun.error_code(code)
    return v


_tid_counter = 0


def _tid() -> bytes:
    """Transaction ids of Data indications only need to differ (RFC 8489 section 6)."""
    global _tid_counter
    _tid_counter = (_tid_counter + 1) & 0xFFFFFFFFFFFFFFFF
    return b"\x00\x00\x00\x00" + _tid_counter.to_bytes(8, "big")
