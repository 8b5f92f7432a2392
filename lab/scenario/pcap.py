"""A small reader of the lab's own captures: IPv4 packets with their UDP or TCP ports.

The runner reads every capture after a run to say where packets died; scapy dissects each
packet in Python and takes about a second (its import included) for one call's captures,
most of the lab's overhead per scenario. The captures are ours (tcpdump on a veth: classic
pcap, Ethernet or Linux cooked headers), so a reader of exactly that is enough and about
fifty times faster. Anything else in a file (IPv6, ARP, fragments) is skipped.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

# link type -> bytes before the IP header, and where the EtherType is (None: raw IP)
_LINK_HEADER = {1: 14, 113: 16, 276: 20, 101: 0, 228: 0, 12: 0}     # Ethernet, Linux cooked v1/v2, raw IP
_ETHERTYPE_AT = {1: 12, 113: 14, 276: 0, 101: None, 228: None, 12: None}


@dataclass(frozen=True)
class Packet:
    src: str
    dst: str
    proto: int                   # 6 tcp, 17 udp
    sport: int
    dport: int
    flags: int                   # TCP flags (0 for UDP)
    payload: bytes               # as captured (the snap length may cut it)
    seq: int = 0                 # TCP sequence number: a retransmission carries the same one


def _ip(b: bytes) -> str:
    return f"{b[0]}.{b[1]}.{b[2]}.{b[3]}"


def packets(path: str | Path) -> Iterator[Packet]:
    """Every IPv4 UDP/TCP packet of a classic pcap file, in order."""
    try:
        data = Path(path).read_bytes()
    except OSError:
        return
    if len(data) < 24:
        return
    magic = data[:4]
    if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1"):
        endian = "<"
    elif magic in (b"\xa1\xb2\xc3\xd4", b"\xa1\xb2\x3c\x4d"):
        endian = ">"
    else:
        return                   # pcapng or not a capture: nothing we wrote
    linktype = struct.unpack(endian + "I", data[20:24])[0] & 0x0FFFFFFF
    if linktype not in _LINK_HEADER:
        return
    skip, et_at = _LINK_HEADER[linktype], _ETHERTYPE_AT[linktype]
    rec = struct.Struct(endian + "IIII")
    i = 24
    while i + 16 <= len(data):
        _s, _us, incl, _orig = rec.unpack_from(data, i)
        i += 16
        frame = data[i:i + incl]
        i += incl
        ethertype = b"\x08\x00" if et_at is None else frame[et_at:et_at + 2]
        if ethertype != b"\x08\x00" or len(frame) < skip + 20:
            continue
        ip = frame[skip:]
        if ip[0] >> 4 != 4:
            continue
        ihl = (ip[0] & 0x0F) * 4
        proto = ip[9]
        frag = struct.unpack("!H", ip[6:8])[0] & 0x1FFF
        if proto not in (6, 17) or frag or len(ip) < ihl + 8:
            continue
        total = struct.unpack("!H", ip[2:4])[0]
        l4 = ip[ihl:total]
        sport, dport = struct.unpack("!HH", l4[0:4])
        if proto == 17:
            yield Packet(_ip(ip[12:16]), _ip(ip[16:20]), 17, sport, dport, 0, l4[8:])
        elif len(l4) >= 14:
            off = (l4[12] >> 4) * 4
            yield Packet(_ip(ip[12:16]), _ip(ip[16:20]), 6, sport, dport, l4[13], l4[off:],
                         struct.unpack("!I", l4[4:8])[0])
