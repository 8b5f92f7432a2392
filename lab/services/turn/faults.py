"""Fault injection: what the server does wrong on purpose, set in the config and live.

A fault set is a JSON object::

    {"drop":  [{"method": "Allocate", "transport": "udp", "probability": 1.0}],
     "delay": [{"method": "*", "transport": "tcp", "ms": 800}],
     "error": [{"method": "Allocate", "code": 508}],
     "stop_relay": false,
     "permission_lifetime": 20}

``method`` and ``transport`` default to "*" (any). ``drop`` drops the response (the
request was still processed, as when a reply is lost), ``delay`` holds it, ``error``
answers with the code instead of processing. An error rule answers only requests that
passed authentication (after the 401 round, with a valid MESSAGE-INTEGRITY), as real
servers do: coturn sends 486 (quota) and 508 (no relay port) only to an authenticated
Allocate. ``"pre_auth": true`` answers the unauthenticated first request too, which no real
server does; Chrome ignores such an answer (docs/fidelity.md). Binding is never
authenticated: an error rule for it always applies. ``stop_relay`` discards all relayed data
both ways. ``permission_lifetime`` overrides the lifetime of permissions installed
from then on (expiring them early).

Live control: the server listens on a unix socket (``control`` in its config), the lab's
JSON-line channel (lab/core/control.py); each request is one JSON line (``ControlRequest``),
each answer one JSON line: ``{"faults": {...}}`` replaces the fault set,
``{"expire_permissions": true}`` drops every permission now, ``{"restart": true}`` loses every
allocation and nonce (as a restarted server would), ``{"status": true}`` reports counters. A
request that is not one of these (a drop rule that is not a list, a delay in a string, a field
the server does not know) is answered with an error and changes nothing. ``control()`` below
is the client.
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass, field
from typing import Literal

from pydantic import Field, ValidationError

from lab.core.control import Request, ask, describe
from lab.model.turn import check_faults


class _Rule(Request):
    method: str = "*"            # a STUN method name, or * for any
    transport: Literal["*", "udp", "tcp", "tls"] = "*"


class DropRule(_Rule):
    probability: float = Field(1.0, ge=0, le=1)


class DelayRule(_Rule):
    ms: float = Field(0, ge=0)


class ErrorRule(_Rule):
    code: int = Field(ge=300, le=699)
    pre_auth: bool = False       # also answer before authentication (unrealistic; see above)


class FaultSet(Request):
    """The message form of a fault set (see the module's docstring)."""

    drop: list[DropRule] = []
    delay: list[DelayRule] = []
    error: list[ErrorRule] = []
    stop_relay: bool = False
    permission_lifetime: float | None = Field(None, ge=0)


class ControlRequest(Request):
    """One request on the control socket; several verbs may come in one request."""

    faults: FaultSet | None = None
    expire_permissions: bool = False
    restart: bool = False
    status: bool = False



@dataclass
class Faults:
    drop: list[dict] = field(default_factory=list)
    delay: list[dict] = field(default_factory=list)
    error: list[dict] = field(default_factory=list)
    stop_relay: bool = False
    permission_lifetime: float | None = None

    @classmethod
    def from_dict(cls, d: dict | None) -> "Faults":
        """Raises ValueError naming what is wrong (an unknown kind, a rule of the wrong shape)."""
        d = check_faults(d)
        try:
            FaultSet.model_validate(d)
        except ValidationError as exc:
            raise ValueError(describe(exc)) from None
        # the rules are kept as given: the status answer shows them back as they were set
        return cls(**d)

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

    def error_code(self, method: str, transport: str, authenticated: bool = True) -> int | None:
        """The code to answer with, or None. Before authentication only ``pre_auth`` rules
        answer (and every rule for Binding, which is never authenticated)."""
        return next((r["code"] for r in self.error if self._match(r, method, transport)
                     and (authenticated or r.get("pre_auth", False) or method == "Binding")), None)


def control(path: str, request: dict, timeout: float = 5.0) -> dict:
    """Send one request to a running server's control socket (and to every worker's,
    ``path.1``, ``path.2`` ..., when it runs several); return the answer, counters summed.
    Raises lab.core.control.ControlError (an OSError) when a server does not answer."""
    answers = [ask(path, request, timeout)]
    i = 1
    while os.path.exists(f"{path}.{i}"):
        answers.append(ask(f"{path}.{i}", request, timeout))
        i += 1
    if len(answers) == 1:
        return answers[0]
    out = dict(answers[0])
    out["ok"] = all(a.get("ok") for a in answers)
    out["allocations"] = sum(a.get("allocations", 0) for a in answers)
    out["permissions"] = [p for a in answers for p in a.get("permissions", [])]
    out["stats"] = {k: sum(a.get("stats", {}).get(k, 0) for a in answers) for k in out.get("stats", {})}
    return out
