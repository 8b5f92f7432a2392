"""STUN wire format (RFC 8489) with the TURN (RFC 8656) and RFC 5780 attributes.

Only bytes in, bytes out: no sockets, no state. ``parse`` is strict, because whatever
it accepts the server answers: a message it rejects is dropped silently (RFC 8489
section 6.3: "the agent MUST silently discard" what is not a well-formed STUN message).
"""

from __future__ import annotations

import binascii
import hashlib
import hmac
import ipaddress
import socket
import struct
from typing import NamedTuple

from .errors import LabError

try:        # OpenSSL's one-shot HMAC without the Python frame of hmac.digest around it
    from _hashlib import hmac_digest as _hmac_digest
except ImportError:     # pragma: no cover - a Python built without OpenSSL
    _hmac_digest = hmac.digest

MAGIC = 0x2112A442
MAGIC_BYTES = struct.pack("!I", MAGIC)
HEADER = 20
FINGERPRINT_XOR = 0x5354554E

# methods (RFC 8489 section 18.2, RFC 8656 section 18)
BINDING, ALLOCATE, REFRESH, SEND, DATA, CREATE_PERMISSION, CHANNEL_BIND = 0x001, 0x003, 0x004, 0x006, 0x007, 0x008, 0x009
METHOD_NAMES = {BINDING: "Binding", ALLOCATE: "Allocate", REFRESH: "Refresh", SEND: "Send", DATA: "Data",
                CREATE_PERMISSION: "CreatePermission", CHANNEL_BIND: "ChannelBind"}
# classes (RFC 8489 section 5)
REQUEST, INDICATION, SUCCESS, ERROR = 0b00, 0b01, 0b10, 0b11
CLASS_NAMES = ("request", "indication", "success", "error")       # by class

# attributes (RFC 8489 section 18.3, RFC 8656 section 18, RFC 5780 section 7)
MAPPED_ADDRESS = 0x0001
CHANGE_REQUEST = 0x0003
USERNAME = 0x0006
MESSAGE_INTEGRITY = 0x0008
ERROR_CODE = 0x0009
UNKNOWN_ATTRIBUTES = 0x000A
CHANNEL_NUMBER = 0x000C
LIFETIME = 0x000D
XOR_PEER_ADDRESS = 0x0012
DATA_ATTR = 0x0013
REALM = 0x0014
NONCE = 0x0015
XOR_RELAYED_ADDRESS = 0x0016
REQUESTED_ADDRESS_FAMILY = 0x0017
EVEN_PORT = 0x0018
REQUESTED_TRANSPORT = 0x0019
DONT_FRAGMENT = 0x001A
MESSAGE_INTEGRITY_SHA256 = 0x001C
PASSWORD_ALGORITHM = 0x001D
USERHASH = 0x001E
XOR_MAPPED_ADDRESS = 0x0020
RESERVATION_TOKEN = 0x0022
PADDING = 0x0026
RESPONSE_PORT = 0x0027
ADDITIONAL_ADDRESS_FAMILY = 0x8000
PASSWORD_ALGORITHMS = 0x8002
ALTERNATE_DOMAIN = 0x8003
SOFTWARE = 0x8022
ALTERNATE_SERVER = 0x8023
FINGERPRINT = 0x8028
ICE_CONTROLLED, ICE_CONTROLLING, PRIORITY, USE_CANDIDATE = 0x8029, 0x802A, 0x0024, 0x0025
RESPONSE_ORIGIN = 0x802B
OTHER_ADDRESS = 0x802C

# CHANGE-REQUEST flags (RFC 5780 section 7.2)
CHANGE_IP, CHANGE_PORT = 0x4, 0x2

#: comprehension-required attributes (< 0x8000) the server understands; any other one
#: in a request earns 420 (RFC 8489 section 6.3.1)
KNOWN_REQUIRED = {MAPPED_ADDRESS, CHANGE_REQUEST, USERNAME, MESSAGE_INTEGRITY, ERROR_CODE, UNKNOWN_ATTRIBUTES,
                  CHANNEL_NUMBER, LIFETIME, XOR_PEER_ADDRESS, DATA_ATTR, REALM, NONCE, XOR_RELAYED_ADDRESS,
                  REQUESTED_ADDRESS_FAMILY, EVEN_PORT, REQUESTED_TRANSPORT, DONT_FRAGMENT, XOR_MAPPED_ADDRESS,
                  RESERVATION_TOKEN, PADDING, RESPONSE_PORT, PRIORITY, USE_CANDIDATE}

REASONS = {300: "Try Alternate", 400: "Bad Request", 401: "Unauthorized", 403: "Forbidden",
           420: "Unknown Attribute", 437: "Allocation Mismatch", 438: "Stale Nonce",
           440: "Address Family not Supported", 441: "Wrong Credentials", 443: "Peer Address Family Mismatch",
           442: "Unsupported Transport Protocol", 486: "Allocation Quota Reached", 500: "Server Error",
           508: "Insufficient Capacity"}


class ParseError(LabError, ValueError):
    """Not a well-formed STUN message: discard it."""


class Message:
    """A parsed message: attributes keep their raw values (decode with the helpers)."""

    __slots__ = ("method", "cls", "tid", "attrs", "raw", "integrity_at", "fingerprinted", "_index", "_indexed")

    def __init__(self, method: int, cls: int, tid: bytes, attrs: list | None = None, raw: bytes = b"",
                 integrity_at: int | None = None, fingerprinted: bool = False):
        self.method = method
        self.cls = cls
        self.tid = tid
        self.attrs: list[tuple[int, bytes]] = attrs if attrs is not None else []
        self.raw = raw
        #: offset of MESSAGE-INTEGRITY in ``raw`` (None when absent)
        self.integrity_at = integrity_at
        #: the message ended with a (correct) FINGERPRINT
        self.fingerprinted = fingerprinted
        self._index: dict[int, bytes] | None = None
        self._indexed = 0

    def __repr__(self) -> str:
        return f"Message({self.name}, cls={self.cls}, tid={self.tid.hex()}, attrs={self.attrs!r})"

    def __eq__(self, other) -> bool:
        return isinstance(other, Message) and (self.method, self.cls, self.tid, self.attrs) == \
            (other.method, other.cls, other.tid, other.attrs)

    def get(self, atype: int) -> bytes | None:
        """The first attribute of this type (RFC 8489 section 14: later ones are ignored)."""
        index = self._index
        if index is None or self._indexed != len(self.attrs):
            index = self._reindex()
        return index.get(atype)

    def has(self, atype: int) -> bool:
        return self.get(atype) is not None

    def _reindex(self) -> dict[int, bytes]:
        # a request is asked for up to 8 attributes: one dict instead of 8 scans
        index: dict[int, bytes] = {}
        for t, v in reversed(self.attrs):
            index[t] = v
        self._index, self._indexed = index, len(self.attrs)
        return index

    @property
    def name(self) -> str:
        return METHOD_NAMES.get(self.method) or f"0x{self.method:03x}"


def message_type(method: int, cls: int) -> int:
    """RFC 8489 section 5: the class bits C1 C0 are interleaved with the method bits."""
    return ((method & 0x0F80) << 2) | ((method & 0x0070) << 1) | (method & 0x000F) \
        | ((cls & 2) << 7) | ((cls & 1) << 4)


def split_type(t: int) -> tuple[int, int]:
    method = ((t & 0x3E00) >> 2) | ((t & 0x00E0) >> 1) | (t & 0x000F)
    cls = ((t & 0x0100) >> 7) | ((t & 0x0010) >> 4)
    return method, cls


def method_name(method: int) -> str:
    """"Allocate", or the number for a method without a name ("0x00b")."""
    return METHOD_NAMES.get(method) or f"0x{method:03x}"


def is_stun(data: bytes) -> bool:
    """RFC 8489 section 6.3 / RFC 8656 section 12: first two bits zero and the magic cookie."""
    return len(data) >= HEADER and data[0] < 0x40 and data[4:8] == MAGIC_BYTES


# The server parses and encodes every message in Python: the struct formats are compiled
# once, and the type <-> (method, class) mapping is a table lookup, not bit twiddling.
_unpack_hh = struct.Struct("!HH").unpack_from
_pack_hh = struct.Struct("!HH").pack
_pack_h = struct.Struct("!H").pack
_pack_hhi = struct.Struct("!HHI").pack
_unpack_i = struct.Struct("!I").unpack_from
_TYPE = {(m, c): message_type(m, c) for m in METHOD_NAMES for c in range(4)}
_SPLIT = {t: mc for mc, t in _TYPE.items()}
_PAD = (b"", b"\x00\x00\x00", b"\x00\x00", b"\x00")      # by length % 4
_MI_HEAD = _pack_hh(MESSAGE_INTEGRITY, 20)
_FP_HEAD = _pack_hh(FINGERPRINT, 4)


def parse(data: bytes) -> Message:
    """RFC 8489 sections 5, 14 and 6.3: header, attribute TLVs with 32-bit padding,
    nothing but FINGERPRINT after MESSAGE-INTEGRITY, FINGERPRINT last and correct."""
    n = len(data)
    if n < HEADER:
        raise ParseError("shorter than a header")
    t, length = _unpack_hh(data)
    if t & 0xC000 or data[4:8] != MAGIC_BYTES:
        raise ParseError("not STUN")
    if length & 3 or HEADER + length != n:
        raise ParseError("length does not match")
    if type(data) is not bytes:
        data = bytes(data)
    mc = _SPLIT.get(t)
    method, cls = mc if mc is not None else split_type(t)
    attrs: list[tuple[int, bytes]] = []
    msg = Message(method, cls, data[8:20], attrs, data)
    append = attrs.append
    pos = HEADER
    integrity_at = None
    while pos < n:
        if pos + 4 > n:
            raise ParseError("truncated attribute header")
        atype, alen = _unpack_hh(data, pos)
        end = pos + 4 + alen
        if end > n:
            raise ParseError("attribute runs past the message")
        if atype == FINGERPRINT:
            if alen != 4 or end != n:
                raise ParseError("FINGERPRINT not last")
            if _unpack_i(data, pos + 4)[0] != fingerprint(data[:pos]):
                raise ParseError("bad FINGERPRINT")
            msg.fingerprinted = True
        elif integrity_at is not None and atype != MESSAGE_INTEGRITY_SHA256:
            # RFC 8489 section 14.5: attributes after MESSAGE-INTEGRITY are ignored;
            # we refuse them outright (no legitimate client sends them)
            raise ParseError("attribute after MESSAGE-INTEGRITY")
        if atype == MESSAGE_INTEGRITY:
            if alen != 20:
                raise ParseError("MESSAGE-INTEGRITY of the wrong size")
            integrity_at = pos
        append((atype, data[pos + 4:end]))
        pos = end + (-alen & 3)
    if pos != n:
        raise ParseError("padding runs past the message")
    msg.integrity_at = integrity_at
    return msg


def fingerprint(data: bytes) -> int:
    """RFC 8489 section 14.7: CRC-32 of the message up to the attribute, XOR 0x5354554e;
    the header's length already counts the FINGERPRINT attribute."""
    return (binascii.crc32(data) ^ FINGERPRINT_XOR) & 0xFFFFFFFF


def long_term_key(username: str, realm: str, password: str) -> bytes:
    """RFC 8489 section 9.2.2: MD5(username ":" realm ":" password) (SASLprep not applied)."""
    return hashlib.md5(f"{username}:{realm}:{password}".encode()).digest()


def check_integrity(msg: Message, key: bytes) -> bool:
    """RFC 8489 section 14.5: HMAC-SHA1 over the message up to MESSAGE-INTEGRITY, with
    the header's length adjusted to end just after it."""
    at = msg.integrity_at
    if at is None:
        return False
    raw = msg.raw
    # a one-shot HMAC: a fraction of hmac.new()'s Python overhead
    expect = _hmac_digest(key, raw[:2] + _pack_h(at - HEADER + 24) + raw[4:at], "sha1")
    return hmac.compare_digest(expect, raw[at + 4:at + 24])


def encode(method: int, cls: int, tid: bytes, attrs: list[tuple[int, bytes]],
           key: bytes | None = None, add_fingerprint: bool = False) -> bytes:
    """RFC 8489 section 5/14: build a message, then MESSAGE-INTEGRITY and FINGERPRINT."""
    parts = []
    add = parts.append
    for atype, value in attrs:
        ln = len(value)
        add(_pack_hh(atype, ln))
        add(value)
        if ln & 3:
            add(_PAD[ln & 3])
    body = b"".join(parts)
    blen = len(body)
    mtype = _TYPE.get((method, cls))
    if mtype is None:
        mtype = message_type(method, cls)
    if key is not None:
        out = _pack_hhi(mtype, blen + 24, MAGIC) + tid + body
        out += _MI_HEAD + _hmac_digest(key, out, "sha1")
        blen += 24
    else:
        out = _pack_hhi(mtype, blen, MAGIC) + tid + body
    if add_fingerprint:
        out = out[:2] + _pack_h(blen + 8) + out[4:]
        out += _FP_HEAD + _pack_i(fingerprint(out))
    return out


_pack_i = struct.Struct("!I").pack


class Header(NamedTuple):
    method: int
    cls: int
    tid: bytes
    code: int | None        # ERROR-CODE of an error response, else None


def peek(data: bytes) -> Header | None:
    """The header of what looks like a STUN message (first two bits zero, the magic cookie),
    and an error response's ERROR-CODE; None for anything else (ChannelData, media).

    Lenient where ``parse`` is strict: diagnosis reads captured packets, truncated by the
    capture's snap length or mangled on the way, and counts whatever still says what it was;
    a probe recognises answers by their transaction ID without vouching for the rest."""
    if len(data) < HEADER or data[0] & 0xC0 or data[4:8] != MAGIC_BYTES:
        return None
    t, length = _unpack_hh(data)
    method, cls = split_type(t)
    code = None
    if cls == ERROR:
        i, end = HEADER, min(len(data), HEADER + length)
        while i + 4 <= end:
            atype, alen = _unpack_hh(data, i)
            if atype == ERROR_CODE and i + 8 <= end:
                code = parse_error_code(data[i + 4:i + 8])
                break
            i += 4 + alen + (-alen & 3)
    return Header(method, cls, bytes(data[8:20]), code)


# -- attribute values ---------------------------------------------------------------

def xor_address(addr: tuple[str, int], tid: bytes) -> bytes:
    """RFC 8489 section 14.2: XOR-MAPPED-ADDRESS (and XOR-PEER/RELAYED-ADDRESS)."""
    port = addr[1] ^ (MAGIC >> 16)
    if ":" not in addr[0]:      # IPv4 without ipaddress objects: this is on every answer
        return struct.pack("!BBHI", 0, 1, port, int.from_bytes(socket.inet_aton(addr[0]), "big") ^ MAGIC)
    ip = ipaddress.ip_address(addr[0])
    key = int.from_bytes(MAGIC_BYTES + tid, "big")
    return struct.pack("!BBH", 0, 2, port) + (int(ip) ^ key).to_bytes(16, "big")


def parse_xor_address(value: bytes, tid: bytes) -> tuple[str, int]:
    if len(value) < 4:
        raise ParseError("short address")
    _, family, port = struct.unpack_from("!BBH", value)
    port ^= MAGIC >> 16
    if family == 1 and len(value) == 8:
        return str(ipaddress.IPv4Address(struct.unpack_from("!I", value, 4)[0] ^ MAGIC)), port
    if family == 2 and len(value) == 20:
        key = int.from_bytes(MAGIC_BYTES + tid, "big")
        return str(ipaddress.IPv6Address(int.from_bytes(value[4:], "big") ^ key)), port
    raise ParseError("bad address family")


def address(addr: tuple[str, int]) -> bytes:
    """RFC 8489 section 14.1: MAPPED-ADDRESS (and OTHER-ADDRESS, RESPONSE-ORIGIN)."""
    ip = ipaddress.ip_address(addr[0])
    return struct.pack("!BBH", 0, 1 if ip.version == 4 else 2, addr[1]) + ip.packed


def parse_address(value: bytes) -> tuple[str, int]:
    """RFC 8489 section 14.1: MAPPED-ADDRESS, OTHER-ADDRESS, RESPONSE-ORIGIN."""
    if len(value) < 4:
        raise ParseError("short address")
    _, family, port = struct.unpack_from("!BBH", value)
    if family == 1 and len(value) == 8:
        return socket.inet_ntoa(value[4:]), port
    if family == 2 and len(value) == 20:
        return str(ipaddress.IPv6Address(value[4:])), port
    raise ParseError("bad address family")


def error_code(code: int, reason: str | None = None) -> bytes:
    """RFC 8489 section 14.8."""
    return struct.pack("!HBB", 0, code // 100, code % 100) + (reason or REASONS.get(code, "")).encode()


def parse_error_code(value: bytes) -> int:
    return (value[2] & 7) * 100 + value[3]


def u32(value: int) -> bytes:
    return struct.pack("!I", value)


def read_u32(value: bytes) -> int:
    if len(value) != 4:
        raise ParseError("not 32 bits")
    return struct.unpack("!I", value)[0]


# -- ChannelData (RFC 8656 section 12.4) ---------------------------------------------

def is_channel_data(data: bytes) -> bool:
    return len(data) >= 4 and 0x40 <= data[0] <= 0x7F   # RFC 5766 range, see turn.CHANNEL_MAX


def channel_data(channel: int, payload: bytes, pad: bool = False) -> bytes:
    """RFC 8656 section 12.4: over TCP/TLS the message is padded to a multiple of 4."""
    out = struct.pack("!HH", channel, len(payload)) + payload
    return out + b"\x00" * (-len(payload) % 4) if pad else out
