"""The TURN service's defaults and its fault-set check: one home for what the topology, the
server and coturn must agree on.

Read by the topology schema (``schema.TurnOptions``, what a file may leave out), the server's
own config (``lab.services.turn.config.TurnConfig``), coturn's rendering, the signalling
service (the TURN URLs it gives the softphone), topology validation and the server's
``Faults``. It is in the model, not in lab.services, because the model checks a topology
before anything runs and must not import a server to do so.
"""

from __future__ import annotations

BACKENDS = ("embedded", "coturn")
BACKEND = "embedded"
REALM = "icelab"
SECRET = "icelab-turn-secret"          # REST credentials (use-auth-secret)
UDP_PORT = 3478
TCP_PORT = 3478
TLS_PORT = 443                         # TLS and plain TCP on one port, as coturn does
MIN_PORT = 49152                       # relay port range
MAX_PORT = 65535
DEFAULT_LIFETIME = 600
MAX_LIFETIME = 3600
PERMISSION_LIFETIME = 300
CHANNEL_LIFETIME = 600
NONCE_LIFETIME = 600

#: what a fault set may hold (docs/turn.md, "Faults")
FAULT_KINDS = ("drop", "delay", "error", "stop_relay", "permission_lifetime")


def check_faults(faults: dict | None) -> dict:
    """The fault set, checked: ValueError (or TypeError, for a wrongly shaped one) says why not."""
    if not isinstance(faults, (dict, type(None))):
        raise ValueError(f"a fault set is a mapping of {', '.join(FAULT_KINDS)}")
    d = dict(faults or {})
    unknown = set(d) - set(FAULT_KINDS)
    if unknown:
        raise ValueError(f"unknown faults: {', '.join(sorted(unknown))}")
    for rule in d.get("error") or []:
        if not isinstance(rule, dict) or not isinstance(rule.get("code"), int) or not 300 <= rule["code"] <= 699:
            raise ValueError("an error fault needs a code between 300 and 699")
    return d
