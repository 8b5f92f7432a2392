"""``backend: coturn``: the same TurnConfig rendered as a turnserver.conf (coturn 4.6,
Debian's package), so that the `turn` role can run the real thing instead.

What does not map (see docs/turn.md): fault injection and the transaction log exist
only in the embedded server; coturn's ``listening-port`` is UDP and TCP together, so
turning off only one of them is not possible; DTLS is always off.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path

from lab.model.turn import UDP_PORT
from .config import TurnConfig


def _range(prefix: str) -> str:
    """coturn takes ``ip`` or ``ip-ip``, not prefixes."""
    net = ipaddress.ip_network(prefix, strict=False)
    return str(net[0]) if net.num_addresses == 1 else f"{net[0]}-{net[-1]}"


def render(cfg: TurnConfig, workdir: str | Path) -> str:
    """turnserver.conf text for ``cfg``; coturn's own log and database go to ``workdir``."""
    w = Path(workdir)
    lines = ["# rendered by lab.services.turn.coturn from the lab's TURN config", "fingerprint",
             "no-cli", "no-dtls", "no-multicast-peers", "simple-log", "no-software-attribute",
             f"realm={cfg.realm}", f"log-file={w / 'coturn.log'}", f"pidfile={w / 'coturn.pid'}",
             f"userdb={w / 'coturn.db'}",
             f"min-port={cfg.min_port}", f"max-port={cfg.max_port}",
             f"max-allocate-lifetime={cfg.max_lifetime}", f"channel-lifetime={cfg.channel_lifetime}",
             f"permission-lifetime={cfg.permission_lifetime}", f"stale-nonce={cfg.nonce_lifetime}"]
    for ip in cfg.addresses:
        lines.append(f"listening-ip={ip}")
    lines.append(f"relay-ip={cfg.relay_address or cfg.addresses[0]}")
    if cfg.alt_address:
        lines.append(f"listening-ip={cfg.alt_address}")
    if cfg.alt_port:
        lines.append(f"alt-listening-port={cfg.alt_port}")
    lines.append(f"listening-port={cfg.udp_port or cfg.tcp_port or UDP_PORT}")
    if not cfg.udp_port:
        lines.append("no-udp")
    if not cfg.tcp_port and not cfg.tls_port:
        lines.append("no-tcp")
    if cfg.tls_port and cfg.cert and cfg.key:
        lines += [f"tls-listening-port={cfg.tls_port}", f"cert={cfg.cert}", f"pkey={cfg.key}"]
    else:
        lines.append("no-tls")
        if cfg.tls_port:
            lines.append(f"tls-listening-port={cfg.tls_port}")   # still plain TCP there
    if cfg.secret:
        lines += ["use-auth-secret", f"static-auth-secret={cfg.secret}"]
    if cfg.users:
        lines.append("lt-cred-mech" if not cfg.secret else "# static users alongside the REST secret")
        lines += [f"user={u}:{p}" for u, p in cfg.users.items()]
    if cfg.user_quota:
        lines.append(f"user-quota={cfg.user_quota}")
    if cfg.total_quota:
        lines.append(f"total-quota={cfg.total_quota}")
    if cfg.allow_loopback:
        lines.append("allow-loopback-peers")
    lines += [f"allowed-peer-ip={_range(p)}" for p in cfg.allowed_peers]
    lines += [f"denied-peer-ip={_range(p)}" for p in cfg.denied_peers]
    return "\n".join(lines) + "\n"


def command(conf: str | Path) -> list[str]:
    return ["turnserver", "-c", str(conf)]
