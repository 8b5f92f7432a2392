"""Fault injection: what the server does wrong on purpose, set in the config and live.

A fault set is a JSON object::

    {"drop":  [{"method": "Allocate", "transport": "udp", "probability": 1.0}],
     "delay": [{"method": "*", "transport": "tcp", "ms": 800}],
     "error": [{"method": "Allocate", "code": 508}],
     "stop_relay": false,
     "permission_lifetime": 20}

``method`` and ``transport`` default to "*" (any). ``drop`` drops the response (the
request was still processed, as when a reply is lost), ``delay`` holds it, ``error``
answers with the code instead of processing. ``stop_relay`` discards all relayed data
both ways. ``permission_lifetime`` overrides the lifetime of permissions installed
from then on (expiring them early).

Live control: the server listens on a unix socket (``control`` in its config); each
request is one JSON line, each answer one JSON line:
``{"faults": {...}}`` replaces the fault set, ``{"expire_permissions": true}`` drops
every permission now, ``{"restart": true}`` loses every allocation and nonce (as a
restarted server would), ``{"status": true}`` reports counters. ``control()`` below is
the client.
"""

from __future__ import annotations

import json
import os
import random
import socket
from dataclasses import dataclass, field

from lab.core.names import run_dir
from lab.model.turn import check_faults


@dataclass
class Faults:
    drop: list[dict] = field(default_factory=list)
    delay: list[dict] = field(default_factory=list)
    error: list[dict] = field(default_factory=list)
    stop_relay: bool = False
    permission_lifetime: float | None = None

    @classmethod
    def from_dict(cls, d: dict | None) -> "Faults":
        return cls(**check_faults(d))

    @property
    def active(self) -> bool:
        return bool(self.drop or self.delay or self.error)

    @staticmethod
    def _match(rule: dict, method: str, transport: str) -> bool:
        return rule.get("method", "*") in ("*", method) and rule.get("transport", "*") in ("*", transport)

    def dropped(self, method: str, transport: str) -> bool:
        return any(self._match(r, method, transport) and random.random() < r.get("probability", 1.0)
                   for r in self.drop)

    def delay_s(self, method: str, transport: str) -> float:
        return sum(r.get("ms", 0) for r in self.delay if self._match(r, method, transport)) / 1000

    def error_code(self, method: str, transport: str) -> int | None:
        return next((r["code"] for r in self.error if self._match(r, method, transport)), None)


def control_path(lab: str, node: str = "turn") -> str:
    """Where the embedded server of host ``node`` in lab ``lab`` listens for control."""
    return str(run_dir() / lab / f"turn-{node}.control.sock")


def control(path: str, request: dict, timeout: float = 5.0) -> dict:
    """Send one request to a running server's control socket (and to every worker's,
    ``path.1``, ``path.2`` ..., when it runs several); return the answer, counters summed."""
    answers = [_control_one(path, request, timeout)]
    i = 1
    while os.path.exists(f"{path}.{i}"):
        answers.append(_control_one(f"{path}.{i}", request, timeout))
        i += 1
    if len(answers) == 1:
        return answers[0]
    out = dict(answers[0])
    out["ok"] = all(a.get("ok") for a in answers)
    out["allocations"] = sum(a.get("allocations", 0) for a in answers)
    out["permissions"] = [p for a in answers for p in a.get("permissions", [])]
    out["stats"] = {k: sum(a.get("stats", {}).get(k, 0) for a in answers) for k in out.get("stats", {})}
    return out


def _control_one(path: str, request: dict, timeout: float) -> dict:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(path)
        s.sendall(json.dumps(request).encode() + b"\n")
        buf = b""
        while not buf.endswith(b"\n"):
            chunk = s.recv(65536)
            if not chunk:
                break
            buf += chunk
    return json.loads(buf or b"{}")
