"""The lab's TURN/STUN server (RFC 8489, RFC 8656, RFC 5780), or coturn in its place.

Modules: ``stun`` (wire format), ``turn`` (allocation state), ``auth`` (long-term and
REST credentials), ``server`` (request processing), ``transports`` (sockets),
``faults`` (fault injection and its control socket), ``log`` (transaction log),
``config`` (the JSON config), ``coturn`` (the same config for coturn).

Run it with ``python -m lab.services.turn --config FILE``; in a lab, ``lab_service``
below is what lab/net/services.py calls (lab/services/spec.py). See docs/turn.md.
"""

from __future__ import annotations

import sys

from lab.services.spec import ServiceContext, ServiceSpec
from .config import TurnConfig

__all__ = ["TurnConfig", "lab_service"]


def lab_service(ctx: ServiceContext) -> ServiceSpec:
    """How the `turn` role starts inside a lab (see lab.services.spec)."""
    opts = dict(ctx.options)
    addrs = [str(a) for a in ctx.addresses]
    cfg = TurnConfig.from_dict({"addresses": addrs, **opts})
    if cfg.tls_port:
        issued = ctx.certificate(dns=[ctx.node, f"{ctx.node}.{ctx.lab}.lab"], ips=addrs)
        cfg.cert, cfg.key = str(issued.cert), str(issued.key)
    cfg.log = str(ctx.file("transactions.jsonl"))
    cfg.control = str(ctx.file("control.sock"))
    listens = []
    for ip in cfg.addresses:
        if cfg.udp_port:
            listens.append(("udp", ip, cfg.udp_port))
        if cfg.tcp_port:
            listens.append(("tcp", ip, cfg.tcp_port))
        if cfg.tls_port:
            listens.append(("tcp", ip, cfg.tls_port))
    return ServiceSpec(argv=[sys.executable, "-m", "lab.services.turn", "--config", "{config}"],
                       config=cfg.to_dict(), listens=listens)
