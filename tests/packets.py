"""Crafted packets (scapy) sent from, and seen arriving at, lab nodes: raw and packet
sockets made inside a node's namespace (lab.net.netns), so no helper process is needed."""

import socket
import time

from scapy.layers.inet import ICMP, IP, TCP, UDP

from lab.net import firewall
from lab.net.netns import run_in

ETH_P_ALL, PACKET_OUTGOING = 0x0003, 4


def send(net, node: str, pkt) -> None:
    """A crafted IPv4 packet, sent from inside ``node`` (raw socket: the node routes it)."""
    def go():
        s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
        try:
            s.sendto(bytes(pkt), (pkt[IP].dst, 0))
        finally:
            s.close()
    run_in(net.node(node).pid, go)


class Sniffer:
    """Every IPv4 packet arriving at a node (an AF_PACKET socket in its namespace)."""

    def __init__(self, net, node: str):
        self.sock = run_in(net.node(node).pid,
                           lambda: socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL)))
        self.sock.setblocking(False)

    def saw(self, want, wait: float) -> bool:
        deadline = time.monotonic() + wait
        while True:
            try:
                data, addr = self.sock.recvfrom(65535)
            except BlockingIOError:
                if time.monotonic() > deadline:
                    return False
                time.sleep(0.005)
                continue
            if addr[2] == PACKET_OUTGOING or len(data) < 34 or data[12:14] != b"\x08\x00":
                continue
            got = IP(data[14:])
            if (got.src, got.dst, got.proto) == (want.src, want.dst, want.proto) and \
                    getattr(got.payload, "dport", None) == getattr(want.payload, "dport", None):
                return True

    def close(self):
        self.sock.close()


def udp(src, dst, sport, dport):
    return IP(src=src, dst=dst) / UDP(sport=sport, dport=dport) / b"icelab"


def syn(src, dst, sport, dport, flags="S"):
    return IP(src=src, dst=dst) / TCP(sport=sport, dport=dport, flags=flags, seq=1000)


def ping(src, dst):
    return IP(src=src, dst=dst) / ICMP(type=8, id=7, seq=1)


def rule_hits(pid: int) -> dict[int, int]:
    """Packets per firewall rule number of the node with ``pid``: {4: 36, ...}."""
    return {c.number: c.packets for c in firewall.counters(pid) if c.number is not None}
