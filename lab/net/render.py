"""Render a node's configuration as a readable shell script.

The scripts are written to the lab's run directory (``/run/icelab/<lab>/<node>.sh``)
and run inside the node's namespace, so an engineer can read exactly what each node got.
Sysctls written inside a namespace change that namespace only; the host's are untouched.
"""

from __future__ import annotations

from lab.model.topology import Node, Topology
from . import firewall, nat

# Written in every lab namespace so that lab behaviour does not depend on the host's
# defaults (IPv4 devconf is inherited from the root namespace when a namespace is made).
COMMON_SYSCTLS = {
    "net.ipv6.conf.all.disable_ipv6": 1,     # IPv4 labs: no router solicitations or DAD in captures
    "net.ipv6.conf.default.disable_ipv6": 1,
    "net.ipv4.conf.all.rp_filter": 0,        # asymmetric paths (VPNs, policies) must not be dropped silently
    "net.ipv4.conf.default.rp_filter": 0,
}


def sysctls(node: Node) -> dict[str, int]:
    s = dict(COMMON_SYSCTLS)
    if node.kind != "lan":
        s["net.ipv4.ip_forward"] = 1 if node.forwards else 0
    return s


def ip_batch(node: Node) -> list[str]:
    """``ip -batch`` lines for the node."""
    lines = ["link set lo up"]
    if node.kind == "lan":
        lines.append(f"link add name {node.name} type bridge stp_state 0 forward_delay 0")
        for itf in node.interfaces:
            lines.append(f"link set dev {itf.name} master {node.name} up")
        lines.append(f"link set dev {node.name} up")
        return lines
    for itf in node.interfaces:
        lines.append(f"addr add {itf.address} brd + dev {itf.name}")
        lines.append(f"link set dev {itf.name} up")
    for r in node.routes:
        dest = "default" if r.is_default else str(r.dest)
        lines.append(f"route add {dest} via {r.via} dev {r.dev}")
    return lines


def policy_lines(node: Node) -> list[str]:
    """Per-kind additions: a host's ephemeral ports, a firewall's or nat's nftables table."""
    if node.ephemeral_ports:
        lo, hi = node.ephemeral_ports
        return [f"sysctl -q -w net.ipv4.ip_local_port_range='{lo} {hi}'"]
    if node.kind == "firewall" and node.policy is not None:
        return firewall.script_lines(node)
    if node.kind == "nat" and node.policy is not None:
        return nat.script_lines(node)
    return []


def script(topo: Topology, node: Node) -> str:
    what = node.kind if node.kind != "host" else f"{node.role} host"
    out = [
        "#!/bin/sh",
        f"# icelab lab '{topo.name}': node '{node.name}' ({what}), from {topo.file}",
        "# Runs inside the node's own network namespace.",
        "set -e",
        "sysctl -q -w " + " ".join(f"{k}={v}" for k, v in sysctls(node).items()),
        "ip -batch - <<'EOF'",
        *ip_batch(node),
        "EOF",
        *policy_lines(node),
        "",
    ]
    return "\n".join(out)
