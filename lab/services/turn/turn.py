"""TURN allocation state (RFC 8656): allocations, permissions, channels, relay ports,
quotas and the peer address ACL. No wire format and no event loop here: times are
``time.monotonic()`` values passed in, relay sockets are opened by a callback.
"""

from __future__ import annotations

import ipaddress
import random
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable
from lab.core.errors import LabError

#: RFC 8656 section 12 narrows channels to 0x4000-0x4FFF; RFC 5766 allowed up to 0x7FFF,
#: and coturn (and its turnutils_uclient) still use that range: accept it, as coturn does
CHANNEL_MIN, CHANNEL_MAX = 0x4000, 0x7FFF


class CapacityError(LabError):
    """No relay port left (508)."""


@dataclass(slots=True)
class Allocation:
    """RFC 8656 section 2.2: one relayed transport address for one client 5-tuple."""

    key: tuple                       # (transport, client, local): the 5-tuple
    conn: Any                        # how to reach the client (transports.Conn)
    username: str
    user: str
    hmac_key: bytes
    relay: tuple[str, int]
    expires: float
    tid: bytes                       # the Allocate that made it (to answer retransmissions)
    response: bytes = b""
    sock: Any = None                 # the relay socket (transports own it)
    permissions: dict[str, float] = field(default_factory=dict)     # peer IP -> expiry
    channels: dict[int, tuple[tuple[str, int], float]] = field(default_factory=dict)
    peer_channels: dict[tuple[str, int], int] = field(default_factory=dict)

    def permitted(self, ip: str, now: float) -> bool:
        """RFC 8656 section 9: permissions are per IP address, ports do not matter."""
        exp = self.permissions.get(ip)
        return exp is not None and exp > now

    def add_permission(self, ip: str, until: float) -> None:
        """RFC 8656 section 9.2: install or refresh."""
        self.permissions[ip] = max(until, self.permissions.get(ip, 0.0))

    def bind_channel(self, number: int, peer: tuple[str, int], until: float) -> bool:
        """RFC 8656 section 11.2: a channel maps to one peer and back; False when taken."""
        have = self.channels.get(number)
        if have is not None and have[0] != peer:
            return False
        other = self.peer_channels.get(peer)
        if other is not None and other != number:
            return False
        self.channels[number] = (peer, until)
        self.peer_channels[peer] = number
        return True

    def channel_peer(self, number: int, now: float) -> tuple[str, int] | None:
        ch = self.channels.get(number)
        return ch[0] if ch is not None and ch[1] > now else None

    def channel_of(self, peer: tuple[str, int], now: float) -> int | None:
        n = self.peer_channels.get(peer)
        if n is None:
            return None
        return n if self.channels[n][1] > now else None

    def sweep(self, now: float) -> None:
        """Expired permissions and channels vanish (RFC 8656 sections 9 and 12)."""
        for ip in [ip for ip, exp in self.permissions.items() if exp <= now]:
            del self.permissions[ip]
        for n in [n for n, (_, exp) in self.channels.items() if exp <= now]:
            peer, _ = self.channels.pop(n)
            self.peer_channels.pop(peer, None)


class PortPool:
    """Relay ports: one per allocation, in random order (RFC 8656 section 7.2 recommends
    random choice). The free ports wait in a shuffled queue: a port is taken from the
    front and goes back at the end when freed, so a port is not reused soon after its
    allocation ended (late packets of the old one do not reach the new), and taking one
    costs the same however busy the range is. A port some other program holds (the bind
    fails) goes to the back as well; 508 comes after one pass over the free ports."""

    def __init__(self, low: int, high: int):
        self.low, self.high = low, high
        ports = list(range(low, high + 1))
        random.shuffle(ports)
        self.free: deque[int] = deque(ports)
        self.used: set[int] = set()

    def take(self, try_bind: Callable[[int], Any], even: bool = False) -> tuple[int, Any]:
        free, used = self.free, self.used
        for _ in range(len(free)):
            p = free.popleft()
            if p in used:
                continue        # taken meanwhile as the odd half of an EVEN-PORT pair: give() re-queues it
            if even and p & 1:
                free.append(p)
                continue
            try:
                sock = try_bind(p)
            except BaseException:
                free.append(p)      # not this port's fault (out of descriptors ...): keep it
                raise
            if sock is None:
                free.append(p)
                continue
            used.add(p)
            return p, sock
        raise CapacityError()

    def claim(self, port: int) -> bool:
        """Take a given port (the one after an EVEN-PORT R=1 allocation); False if in use.
        Its stale queue entry is skipped when reached."""
        if port in self.used or not self.low <= port <= self.high:
            return False
        self.used.add(port)
        return True

    def give(self, port: int) -> None:
        if port in self.used:
            self.used.remove(port)
            self.free.append(port)


#: peers refused whatever ``allowed_peers`` says, as coturn 4.6.1 does (measured: see
#: docs/turn.md, "Peers"): "this network" 0.0.0.0/8 (RFC 1122 section 3.2.1.3; 0.0.0.0
#: reaches the host itself, coturn's CVE-2020-26262), and 224.0.0.0 and above: multicast,
#: the reserved 240.0.0.0/4 and the broadcast 255.255.255.255 (coturn's
#: ``no-multicast-peers``, which both backends always have)
NEVER_PEERS = (ipaddress.ip_network("0.0.0.0/8"), ipaddress.ip_network("224.0.0.0/3"))


class PeerACL:
    """coturn's peer checks, in coturn's order: 0.0.0.0/8, multicast, reserved and
    broadcast addresses never; loopback only with ``allow_loopback`` (coturn's
    ``allow-loopback-peers``); then ``allowed-peer-ip`` wins over ``denied-peer-ip``.
    No allowed prefix reaches what the first two refuse."""

    def __init__(self, allowed: list[str], denied: list[str], allow_loopback: bool = False):
        self.allowed = [ipaddress.ip_network(p, strict=False) for p in allowed]
        self.denied = [ipaddress.ip_network(p, strict=False) for p in denied]
        self.allow_loopback = allow_loopback
        self._cache: dict[str, bool] = {}

    def permits(self, ip: str) -> bool:
        ok = self._cache.get(ip)
        if ok is None:
            a = ipaddress.ip_address(ip)
            if a.is_multicast or a.is_unspecified or (a.version == 4 and any(a in n for n in NEVER_PEERS)):
                ok = False
            elif a.is_loopback:
                ok = self.allow_loopback
            elif any(a in n for n in self.allowed):
                ok = True
            else:
                ok = not any(a in n for n in self.denied)
            if len(self._cache) < 65536:
                self._cache[ip] = ok
        return ok


class Allocations:
    """Every allocation, by 5-tuple and by relay port, with per-user counts (486)."""

    def __init__(self, ports: PortPool):
        self.by_key: dict[tuple, Allocation] = {}
        self.per_user: dict[str, int] = {}
        self.ports = ports

    def __len__(self) -> int:
        return len(self.by_key)

    def get(self, key: tuple) -> Allocation | None:
        return self.by_key.get(key)

    def add(self, a: Allocation) -> None:
        self.by_key[a.key] = a
        self.per_user[a.user] = self.per_user.get(a.user, 0) + 1

    def remove(self, a: Allocation) -> None:
        if self.by_key.pop(a.key, None) is not None:
            self.per_user[a.user] -= 1
            self.ports.give(a.relay[1])

    def expired(self, now: float) -> list[Allocation]:
        return [a for a in self.by_key.values() if a.expires <= now]
