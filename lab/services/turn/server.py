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
    """An error answer: ``code``, extra attributes, and the reason the transaction log gives."""

    def __init__(self, code: int, attrs: list | None = None, reason: str | None = None):
        self.code = code
        self.attrs = attrs or []
        self.reason = reason


#: RFC 8489 section 14.3: USERNAME is "fewer than 509 bytes"; REALM and NONCE "fewer than
#: 128 characters", at most 763 bytes (sections 14.9 and 14.10)
MAX_USERNAME = 508
MAX_REALM_NONCE = 763


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
        """One request, one answer, one line in the transaction log (whatever happens)."""
        started = time.monotonic()
        self.stats["requests"] += 1
        name = msg.name
        key = None
        user = None
        try:
            if self.faults.error:
                code = self.faults.error_code(name, conn.transport, authenticated=False)
                if code is not None:
                    raise Reject(code, reason="error fault (before authentication)"
                                 if msg.method != stun.BINDING else "error fault")
            if msg.method == stun.BINDING:
                self._check_attributes(msg)
                attrs, src = self._binding(msg, conn)
                self._respond(msg, conn, stun.SUCCESS, attrs, None, started, "success", None, src=src)
                return
            handler = self._handlers.get(msg.method)
            if handler is None:
                raise Reject(400, reason="unknown method")
            username, key = self._authenticate(msg)
            user = username
            if self.faults.error:
                # as coturn: 486/508 go to an authenticated request, signed with its key
                code = self.faults.error_code(name, conn.transport)
                if code is not None:
                    raise Reject(code, reason="error fault")
            # RFC 8489 section 6.3: attributes are looked at once authentication passed
            self._check_attributes(msg)
            attrs = handler(msg, conn, username, key)
            if attrs is None:
                # a retransmitted Allocate: its answer went again, unchanged
                self.log.write(conn.client, conn.transport, name, "success", None, started, user, "retransmission")
                return
            store = self.allocs.get(conn.key) if msg.method == stun.ALLOCATE else None
            self._respond(msg, conn, stun.SUCCESS, attrs, key, started, "success", None, user=user, store=store)
        except Reject as r:
            attrs = [(stun.ERROR_CODE, _error_code(r.code))] + r.attrs
            if r.code in (401, 438):
                attrs += [(stun.REALM, self._realm), (stun.NONCE, self.creds.nonce().encode())]
                key = None if r.code == 401 else key
            self._respond(msg, conn, stun.ERROR, attrs, key, started, "error", r.code, user=user, reason=r.reason)
        except stun.ParseError as exc:
            self._respond(msg, conn, stun.ERROR, [(stun.ERROR_CODE, _error_code(400))], key,
                          started, "error", 400, user=user, reason=f"malformed attribute: {exc}")
        except Exception as exc:        # a bug: the client still gets an answer, the log a line
            print(f"turn: error on {name} from {conn.client}: {exc!r}", flush=True)
            self._respond(msg, conn, stun.ERROR, [(stun.ERROR_CODE, _error_code(500))], None,
                          started, "error", 500, user=user, reason=f"internal error: {exc!r}")

    @staticmethod
    def _check_attributes(msg: stun.Message) -> None:
        """RFC 8489 section 6.3.1.1: unknown comprehension-required attributes get 420
        listing them."""
        known = stun.KNOWN_REQUIRED
        for t, _ in msg.attrs:
            if t < 0x8000 and t not in known:
                unknown = [t for t, _ in msg.attrs if t < 0x8000 and t not in known][:32]
                raise Reject(420, [(stun.UNKNOWN_ATTRIBUTES, b"".join(struct.pack("!H", t) for t in unknown))],
                             reason="unknown attributes " + " ".join(f"0x{t:04x}" for t in unknown))

    def _respond(self, msg, conn, cls, attrs, key, started, outcome, code, src=None, user=None,
                 store: Allocation | None = None, reason: str | None = None) -> bytes:
        out = stun.encode(msg.method, cls, msg.tid, attrs, key,
                          add_fingerprint=msg.fingerprinted or msg.method == stun.BINDING)
        if store is not None:
            store.response = out
        name, tr = msg.name, conn.transport
        user = user or None
        if self.faults.active:
            if self.faults.dropped(name, tr):
                self.log.write(conn.client, tr, name, "dropped", code, started, user, "drop fault")
                return out
            delay = self.faults.delay_s(name, tr)
            if delay > 0:
                def later():
                    self._send(conn, out, src)
                    self.log.write(conn.client, tr, name, outcome, code, started, user, reason)
                asyncio.get_running_loop().call_later(delay, later)
                return out
        if src is None:
            conn.send(out)
        else:
            self._send(conn, out, src)
        self.log.write(conn.client, tr, name, outcome, code, started, user, reason)
        return out

    def _send(self, conn, data: bytes, src=None) -> None:
        if src is not None and self.alt_sender is not None:
            self.alt_sender(src, data, conn.client)
        else:
            conn.send(data)

    # -- RFC 8489 section 9.2.4: long-term credentials --------------------------------

    def _authenticate(self, msg: stun.Message) -> tuple[str, bytes]:
        """Nothing derived from what the client sent is kept before its MESSAGE-INTEGRITY
        checked: a flood of made-up names must leave no trace in memory."""
        if msg.integrity_at is None:
            raise Reject(401, reason="no credentials")
        username, realm, nonce = msg.get(stun.USERNAME), msg.get(stun.REALM), msg.get(stun.NONCE)
        if username is None or realm is None or nonce is None:
            raise Reject(400, reason="USERNAME, REALM or NONCE missing")
        if len(username) > MAX_USERNAME:
            raise Reject(400, reason="username too long")
        if len(realm) > MAX_REALM_NONCE or len(nonce) > MAX_REALM_NONCE:
            raise Reject(400, reason="realm or nonce too long")
        try:
            nonce_s = nonce.decode("ascii")
        except UnicodeDecodeError:
            raise Reject(438, reason="bad nonce")       # ours are ASCII: not one of ours (coturn: 438)
        state = self.creds.nonce_state(nonce_s)
        if state != "ok":
            raise Reject(438, reason=f"{state} nonce")
        try:
            username_s = username.decode()
        except UnicodeDecodeError:
            raise Reject(400, reason="username not UTF-8")
        if realm != self._realm:
            raise Reject(401, reason="wrong realm")
        key, why = self.creds.lookup(username_s)
        if key is None:
            raise Reject(401, reason=why)
        if not stun.check_integrity(msg, key):
            raise Reject(401, reason="wrong password")  # the integrity check failed
        self.creds.remember(username_s, key)
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
            raise Reject(420, [(stun.UNKNOWN_ATTRIBUTES, struct.pack("!H", stun.CHANGE_REQUEST))],
                         reason="CHANGE-REQUEST without RFC 5780")
        return attrs, src

    # -- RFC 8656 section 7.2: Allocate --------------------------------------------------

    def _allocate(self, msg, conn, username, key):
        now = time.monotonic()
        have = self.allocs.get(conn.key)
        if have is not None:
            if have.tid == msg.tid and have.response:
                conn.send(have.response)      # a retransmission: the same answer
                return None
            raise Reject(437, reason="allocation exists")
        rt = msg.get(stun.REQUESTED_TRANSPORT)
        if rt is None or len(rt) != 4:
            raise Reject(400, reason="REQUESTED-TRANSPORT missing")
        if rt[0] != UDP:
            raise Reject(442, reason="not UDP")
        if msg.has(stun.RESERVATION_TOKEN) and msg.has(stun.EVEN_PORT):
            raise Reject(400, reason="RESERVATION-TOKEN with EVEN-PORT")
        fam = msg.get(stun.REQUESTED_ADDRESS_FAMILY)
        if fam is not None and (len(fam) != 4 or fam[0] != 1):
            raise Reject(440, reason="not IPv4")
        user = self.creds.user_of(username)
        if self.cfg.user_quota and self.allocs.per_user.get(user, 0) >= self.cfg.user_quota:
            raise Reject(486, reason="user quota")
        if self.cfg.total_quota and len(self.allocs) >= self.cfg.total_quota:
            raise Reject(486, reason="total quota")
        lifetime = self._lifetime(msg)
        even = msg.get(stun.EVEN_PORT)
        token = msg.get(stun.RESERVATION_TOKEN)
        extra = []
        if token is not None:
            # RFC 8656 section 7.2 step 4: the port an earlier EVEN-PORT (R=1) kept
            held = self.reserved.pop(token, None)
            if held is None or held[2] <= now:
                raise Reject(508, reason="unknown or expired RESERVATION-TOKEN")
            port, sock = held[0], held[1]
        else:
            try:
                port, sock = self.allocs.ports.take(lambda p: self._open_pair(p, even),
                                                    even=even is not None)
            except CapacityError:
                raise Reject(508, reason="no relay port left")
            except OSError as exc:
                # socket() failed (out of descriptors, memory): the port went back to the pool
                raise Reject(508, reason=f"relay socket: {exc.strerror or exc}")
            if isinstance(sock, tuple):
                sock, next_sock = sock
                tok = os.urandom(8)
                self.reserved[tok] = (port + 1, next_sock, now + 30)
                extra.append((stun.RESERVATION_TOKEN, tok))
        a = Allocation(conn.key, conn, username, user, key, (self.relay_ip, port), now + lifetime, msg.tid, sock=sock)
        try:
            self.relays.attach(sock, a)
        except OSError as exc:      # epoll_ctl: out of memory or watches
            self.relays.close(sock)
            self.allocs.ports.give(port)
            raise Reject(508, reason=f"relay socket: {exc.strerror or exc}")
        self.allocs.add(a)
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
        try:
            nxt = self.relays.open(self.relay_ip, port + 1)
        except OSError:
            self.allocs.ports.give(port + 1)
            self.relays.close(sock)
            raise
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
            raise Reject(437, reason="no allocation")
        if a.username != username:
            raise Reject(441, reason="not the allocation's credentials")       # RFC 8656 section 6.1: same credentials as the Allocate
        return a

    # -- RFC 8656 section 9: CreatePermission ---------------------------------------------

    def _peers(self, msg) -> list[tuple[str, int]]:
        peers = [stun.parse_xor_address(v, msg.tid) for t, v in msg.attrs if t == stun.XOR_PEER_ADDRESS]
        if not peers:
            raise Reject(400, reason="XOR-PEER-ADDRESS missing")
        for p in peers:
            if ":" in p[0]:
                raise Reject(443, reason="IPv6 peer")   # RFC 8656 section 9.2: peer address family mismatch
            if not self.acl.permits(p[0]):
                raise Reject(403, reason=f"peer {p[0]} denied")
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
            raise Reject(400, reason="CHANNEL-NUMBER missing")
        number = struct.unpack("!H", ch[:2])[0]
        if not CHANNEL_MIN <= number <= CHANNEL_MAX:
            raise Reject(400, reason="channel number out of range")
        peers = self._peers(msg)
        if len(peers) != 1:
            raise Reject(400, reason="more than one peer")
        now = time.monotonic()
        if not a.bind_channel(number, peers[0], now + self.cfg.channel_lifetime):
            raise Reject(400, reason="channel or peer bound otherwise")
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
