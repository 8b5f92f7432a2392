"""NAT nodes rendered to nftables (RFC 4787 behaviours), and conntrack flushing.

What Linux gives (shared/reference/ice-timing.md, "NAT and conntrack on Linux"):

- ``port-restricted``: ``masquerade``. Endpoint-independent mapping (the source port is
  kept while the tuple is unique), address-and-port-dependent filtering: only the exact
  remote a packet went to can answer (RFC 4787 section 4.1 / 5).
- ``symmetric``: ``masquerade fully-random``: a new random port for every new remote
  (address-and-port-dependent mapping), same filtering.
- ``full-cone``: 1:1 NAT of one inside host: SNAT to the outside address and DNAT of
  everything sent to it, so any remote reaches the mapping (endpoint-independent
  filtering). Stock conntrack cannot express address-restricted filtering.

Besides, a real NAT does not route the outside into its private inside: new connections
from outside to inside are dropped unless they were DNATed.

UDP conntrack timeouts are per namespace (``net.netfilter.nf_conntrack_udp_timeout*``),
written by the node's script. Flushing conntrack (a NAT or firewall "reboot") is one
ctnetlink message, sent from a thread inside the node's namespace: no extra package.
"""

from __future__ import annotations

import socket
import struct

from lab.model.firewall import NatPolicy

from .netns import run_in

TABLE = "icelab"


def ruleset(node: str, p: NatPolicy) -> str:
    ins = "{ " + ", ".join(f'"{i}"' for i in p.inside) + " }"
    outs = "{ " + ", ".join(f'"{i}"' for i in p.outside) + " }"
    pool = f" to :{p.ports[0]}-{p.ports[1]}" if p.ports else ""
    masq = f"masquerade{pool} fully-random" if p.type == "symmetric" else f"masquerade{pool}"
    lines = [f"# icelab nat '{node}' ({p.type}): inside {', '.join(p.inside)}; outside {', '.join(p.outside)}",
             f"table inet {TABLE} {{",
             "\tchain forward {", "\t\ttype filter hook forward priority filter; policy accept;",
             # "ct status dnat" tests the flag; "!= dnat" would compare the whole status word
             f'\t\tiifname {outs} oifname {ins} ct state new ct status dnat counter accept comment "r1: mapped inbound"',
             f'\t\tiifname {outs} oifname {ins} ct state new counter drop comment "r2: unsolicited from outside"',
             "\t}"]
    if p.type == "full-cone":
        lines += ["\tchain prerouting {", "\t\ttype nat hook prerouting priority dstnat; policy accept;",
                  f'\t\tiifname {outs} ip daddr {p.public} counter dnat ip to {p.host} comment "r3: 1:1 inbound"',
                  "\t}"]
    lines += ["\tchain postrouting {", "\t\ttype nat hook postrouting priority srcnat; policy accept;"]
    if p.type == "full-cone":
        lines.append(f'\t\tip saddr {p.host} oifname {outs} counter snat ip to {p.public} comment "r4: 1:1 outbound"')
    if p.ports:
        # a port pool needs a protocol with ports; ICMP and the rest keep plain masquerade
        lines.append(f'\t\toifname {outs} meta l4proto {{ tcp, udp }} counter {masq} comment "r5: {masq}"')
        plain = "masquerade fully-random" if p.type == "symmetric" else "masquerade"
        lines.append(f'\t\toifname {outs} counter {plain} comment "r6: {plain} (other protocols)"')
    else:
        lines.append(f'\t\toifname {outs} counter {masq} comment "r5: {masq}"')
    lines += ["\t}", "}"]
    return "\n".join(lines) + "\n"


def sysctls(p: NatPolicy) -> dict[str, int]:
    return {"net.netfilter.nf_conntrack_udp_timeout": p.udp_timeout,
            "net.netfilter.nf_conntrack_udp_timeout_stream": p.udp_stream_timeout}


def script_lines(node) -> list[str]:
    p = node.policy
    return ["sysctl -q -w " + " ".join(f"{k}={v}" for k, v in sysctls(p).items()),
            "nft -f - <<'NFT'", ruleset(node.name, p).rstrip("\n"), "NFT"]


# -- conntrack -------------------------------------------------------------------------

NETLINK_NETFILTER = 12
NFNL_SUBSYS_CTNETLINK = 1
IPCTNL_MSG_CT_DELETE = 2
NLM_F_REQUEST, NLM_F_ACK = 0x1, 0x4
NLMSG_ERROR = 2


def _flush_here() -> None:
    """IPCTNL_MSG_CT_DELETE without a tuple deletes every IPv4 entry (what `conntrack -F` sends)."""
    s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
    try:
        s.bind((0, 0))
        body = struct.pack("BBH", socket.AF_INET, 0, 0)       # struct nfgenmsg
        msg_type = (NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_DELETE
        s.send(struct.pack("=IHHII", 16 + len(body), msg_type, NLM_F_REQUEST | NLM_F_ACK, 1, 0) + body)
        s.settimeout(5)
        reply = s.recv(4096)
        _len, typ, _flags, _seq, _pid = struct.unpack("=IHHII", reply[:16])
        if typ == NLMSG_ERROR:
            (errno_,) = struct.unpack("=i", reply[16:20])
            if errno_ not in (0, -2):        # -ENOENT: the table was already empty
                raise OSError(-errno_, f"flushing conntrack: {socket.errno.errorcode.get(-errno_, errno_)}")
    finally:
        s.close()


def flush_conntrack(pid: int) -> None:
    """Forget every connection the node tracks (its NAT mappings, its firewall state)."""
    run_in(pid, _flush_here)
