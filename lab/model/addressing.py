"""Subnet and address allocation from declared pools.

Rules (documented in docs/topology.md): explicit subnets and addresses are taken first;
pool subnets are allocated in file order, skipping anything that overlaps; on each subnet
forwarding nodes (routers) take the lowest free addresses in link order, so a LAN's
gateway is .1, then hosts take the next free ones.
"""

from __future__ import annotations

import ipaddress
from ipaddress import IPv4Address, IPv4Network

# Public addresses in a lab come from documentation ranges only (RFC 5737); private and
# shared address space (RFC 1918, RFC 6598) is fine for inside networks.
ALLOWED_RANGES = [ipaddress.ip_network(p) for p in (
    "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10",
    "192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24")]
ALLOWED_TEXT = "private (10/8, 172.16/12, 192.168/16, 100.64/10) or documentation (192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24)"

DEFAULT_POOLS = {
    "lan": (ipaddress.ip_network("10.0.0.0/8"), 24),
    "p2p": (ipaddress.ip_network("10.255.0.0/16"), 30),
}


def in_allowed_range(net: IPv4Network) -> bool:
    return any(net.subnet_of(r) for r in ALLOWED_RANGES)


def parse_prefix(text: object) -> tuple[IPv4Network | None, str | None, str | None]:
    """(network, error, hint) for a prefix written by a person."""
    if not isinstance(text, str):
        return None, f"{text!r} is not a prefix", "write it as address/length, e.g. 10.1.0.0/24"
    if "/" not in text:
        return None, f"'{text}' has no prefix length", f"write it as address/length, e.g. {text}/24"
    try:
        net = ipaddress.ip_network(text, strict=False)
    except ValueError:
        return None, f"'{text}' is not an IPv4 prefix", "write it as address/length, e.g. 10.1.0.0/24"
    if net.version != 4:
        return None, f"'{text}' is IPv6; icelab labs are IPv4 only for now", None
    if str(net) != text and ipaddress.ip_interface(text).ip != net.network_address:
        return None, f"'{text}' has host bits set", f"did you mean {net}?"
    return net, None, None


def parse_address(text: object, subnet: IPv4Network | None) -> tuple[IPv4Address | None, str | None, str | None]:
    """(address, error, hint) for an interface address, optionally written with /len."""
    if not isinstance(text, str):
        return None, f"{text!r} is not an IPv4 address", "write it as 10.1.0.5 or 10.1.0.5/24"
    try:
        iface = ipaddress.ip_interface(text)
    except ValueError:
        return None, f"'{text}' is not an IPv4 address", "write it as 10.1.0.5 or 10.1.0.5/24"
    if iface.version != 4:
        return None, f"'{text}' is IPv6; icelab labs are IPv4 only for now", None
    if subnet is None:
        return iface.ip, None, None
    if iface.ip not in subnet:
        return None, f"address {iface.ip} is outside its subnet {subnet}", \
            f"pick an address in {subnet} ({first_host(subnet)} to {last_host(subnet)})"
    if "/" in text and iface.network.prefixlen != subnet.prefixlen:
        return None, f"'{text}' says /{iface.network.prefixlen} but the subnet is {subnet}", \
            f"write {iface.ip}/{subnet.prefixlen} or just {iface.ip}"
    if subnet.prefixlen < 31 and iface.ip in (subnet.network_address, subnet.broadcast_address):
        which = "network" if iface.ip == subnet.network_address else "broadcast"
        return None, f"{iface.ip} is the {which} address of {subnet}", \
            f"pick an address from {first_host(subnet)} to {last_host(subnet)}"
    return iface.ip, None, None


def first_host(net: IPv4Network) -> IPv4Address:
    return net.network_address if net.prefixlen >= 31 else net.network_address + 1


def last_host(net: IPv4Network) -> IPv4Address:
    return net.broadcast_address if net.prefixlen >= 31 else net.broadcast_address - 1


def host_count(net: IPv4Network) -> int:
    return net.num_addresses if net.prefixlen >= 31 else net.num_addresses - 2


class PoolAllocator:
    """Hands out subnets of a fixed size from a prefix, avoiding every subnet in use."""

    def __init__(self, used: list[IPv4Network]):
        self.used = used

    def allocate(self, prefix: IPv4Network, size: int) -> IPv4Network | None:
        for cand in prefix.subnets(new_prefix=size):
            if not any(cand.overlaps(u) for u in self.used):
                self.used.append(cand)
                return cand
        return None


def allocate_hosts(subnet: IPv4Network, taken: set[IPv4Address], count: int) -> list[IPv4Address] | None:
    """The ``count`` lowest free host addresses of ``subnet``, or None if it is full."""
    out: list[IPv4Address] = []
    addr = first_host(subnet)
    last = last_host(subnet)
    while len(out) < count:
        if addr > last:
            return None
        if addr not in taken:
            out.append(addr)
        addr += 1
    return out
