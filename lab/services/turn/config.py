"""The TURN service's configuration: one JSON object, the same for both backends.

The lab writes it to ``/run/icelab/<lab>/turn-<node>.json``; ``python -m
lab.services.turn --config FILE`` reads it. Every field has a default (see TurnConfig); those
a topology can set are lab.model.turn's, the same as the topology schema's.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from lab.model import turn as defaults


#: coturn 4.6 has one credential mechanism at a time: with ``use-auth-secret`` it derives
#: every key from the secret and skips its ``user=`` accounts (userdb.c: get_user_key
#: returns after the secret branch; add_static_user_account ignores them), so the static
#: users would get 401 "Cannot find credentials"
COTURN_ONE_KIND = ("coturn takes static users or a REST secret, not both (with use-auth-secret it ignores "
                   "user= lines and answers those users 401)")


@dataclass
class TurnConfig:
    backend: str = defaults.BACKEND        # embedded | coturn
    realm: str = defaults.REALM
    users: dict[str, str] = field(default_factory=dict)     # static long-term users
    secret: str | None = defaults.SECRET                     # REST credentials (use-auth-secret)
    addresses: list[str] = field(default_factory=lambda: ["127.0.0.1"])   # listening addresses
    relay_address: str | None = None       # relayed transport address (default: addresses[0])
    udp_port: int | None = defaults.UDP_PORT
    tcp_port: int | None = defaults.TCP_PORT
    tls_port: int | None = defaults.TLS_PORT   # TLS and plain TCP on one port, as coturn does
    cert: str | None = None
    key: str | None = None
    min_port: int = defaults.MIN_PORT
    max_port: int = defaults.MAX_PORT
    default_lifetime: int = defaults.DEFAULT_LIFETIME
    max_lifetime: int = defaults.MAX_LIFETIME
    permission_lifetime: int = defaults.PERMISSION_LIFETIME
    channel_lifetime: int = defaults.CHANNEL_LIFETIME
    nonce_lifetime: int = defaults.NONCE_LIFETIME
    strict_channel_permission: bool = False  # True: a ChannelBind's permission lasts 300 s (RFC), not 600 (coturn)
    user_quota: int = 0                    # allocations per user; 0 = unlimited
    total_quota: int = 0
    allowed_peers: list[str] = field(default_factory=list)  # prefixes; allowed wins over denied, never over the fixed rules (PeerACL)
    denied_peers: list[str] = field(default_factory=list)
    allow_loopback: bool = False
    alt_address: str | None = None         # RFC 5780: a second address ...
    alt_port: int | None = None            # ... and port (OTHER-ADDRESS, CHANGE-REQUEST)
    log: str | None = None                 # the transaction log (JSON lines)
    control: str | None = None             # the live fault-injection socket
    faults: dict = field(default_factory=dict)
    workers: int = 1                       # processes sharing the ports (SO_REUSEPORT); see docs/turn.md
    software: str = "icelab-turn"

    @classmethod
    def from_dict(cls, data: dict) -> "TurnConfig":
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown TURN config fields: {', '.join(sorted(unknown))}")
        cfg = cls(**data)
        if cfg.backend not in defaults.BACKENDS:
            raise ValueError(f"backend must be 'embedded' or 'coturn', not {cfg.backend!r}")
        if not 0 < cfg.min_port <= cfg.max_port < 65536:
            raise ValueError("relay port range must satisfy 0 < min_port <= max_port < 65536")
        if cfg.backend == "coturn" and cfg.secret and cfg.users:
            raise ValueError(COTURN_ONE_KIND)
        if cfg.workers > 1 and (cfg.user_quota or cfg.total_quota):
            raise ValueError("quotas need one worker: each worker counts only its own allocations")
        if cfg.workers > 1 and cfg.max_port - cfg.min_port + 1 < cfg.workers:
            raise ValueError("fewer relay ports than workers")
        return cfg

    def for_worker(self, i: int) -> "TurnConfig":
        """Worker ``i`` of ``workers``: its slice of the relay ports and its control socket
        (``control`` for worker 0, ``control.<i>`` for the others; faults.control fans out)."""
        d = asdict(self)
        span = (self.max_port - self.min_port + 1) // self.workers
        d["min_port"] = self.min_port + i * span
        d["max_port"] = self.max_port if i == self.workers - 1 else d["min_port"] + span - 1
        if self.control and i:
            d["control"] = f"{self.control}.{i}"
        return TurnConfig(**d)

    @classmethod
    def load(cls, path: str | Path) -> "TurnConfig":
        return cls.from_dict(json.loads(Path(path).read_text()))

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(asdict(self), indent=2) + "\n")

    def to_dict(self) -> dict:
        return asdict(self)
