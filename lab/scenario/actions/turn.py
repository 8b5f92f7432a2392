"""``turn``: do something to a TURN server the way an operator or an outage would.

- ``stop``: the process ends (SIGTERM, as ``systemctl stop``): nothing answers on 3478, the
  kernel answers ICMP port unreachable. Both backends.
- ``start``: the stopped server starts again with the same config; the step returns once it
  listens. Both backends.
- ``restart``: every allocation and nonce is lost. The embedded server does it through its
  control socket, in place (its sockets stay open, as a quick restart behind a load balancer
  looks to clients); coturn has no such socket, so its process is stopped and started again.
- ``faults`` and ``expire_permissions``: through the control socket (lab/services/turn/
  faults.py); the embedded server only (refused at load with coturn).

At load the steps are checked in time order against the server's state along the timeline:
only a stopped server starts, nothing else is done to a stopped one.
"""

from __future__ import annotations

import subprocess
import time
from typing import Any

from pydantic import Field

from lab.core.errors import did_you_mean
from lab.core.supervise import TimedOut, wait_until
from lab.core.units import format_duration
from lab.net.services import RunningService, _listening
from lab.services.turn.faults import Faults, control

from ..errors import ActionError
from .base import Action, Strict, action


class TurnAction(Strict):
    """Do something to a TURN server at run time; exactly one of the fields:
    ``stop`` (the process ends: no answers at all, the kernel answers ICMP port unreachable),
    ``start`` (a stopped server starts again), ``restart`` (every allocation and nonce lost:
    embedded through its control socket, coturn by restarting the process), ``faults`` (the
    fault set from now on, docs/turn.md; embedded only), ``expire_permissions`` (every
    permission gone now; embedded only)."""

    node: str = Field(description="the host running the turn service")
    stop: bool | None = None
    start: bool | None = None
    restart: bool | None = None
    faults: dict[str, Any] | None = Field(None, description="a fault set as in docs/turn.md; {} clears it")
    expire_permissions: bool | None = None

    @property
    def verbs(self) -> list[str]:
        return [k for k in ("stop", "start", "restart", "faults", "expire_permissions")
                if getattr(self, k) not in (None, False)]


@action
class Turn(Action):
    name = "turn"
    model = TurnAction

    @classmethod
    def check(cls, ck, step, topo) -> bool:
        """One verb, on a host that runs turn, possible with its backend, in an order that
        makes sense (start only a stopped server, nothing else on one)."""
        spec, path = step.spec, step.path
        node = topo.nodes.get(spec.node)
        if node is None or "turn" not in node.services:
            turns = [n.name for n in topo.hosts() if "turn" in n.services]
            ck.err(path + ("node",), f"'{spec.node}' does not run the turn service",
                   did_you_mean(spec.node, turns, "TURN hosts") or "name the host with 'services: [turn]'")
            return False
        verbs = spec.verbs
        if len(verbs) != 1:
            ck.err(path, "the turn step does nothing" if not verbs else
                   f"one thing per turn step, not {len(verbs)} ({', '.join(verbs)})",
                   "write one of 'stop: true', 'start: true', 'restart: true', 'faults: {...}', "
                   "'expire_permissions: true'" if not verbs else "split them into steps with the same 'at'")
            return False
        verb = verbs[0]
        backend = (topo.services.get("turn") or {}).get("backend", "embedded")
        if backend == "coturn" and verb in ("faults", "expire_permissions"):
            ck.err(path + (verb,), f"'{verb}' needs the embedded TURN backend; this lab runs coturn, which has "
                   "no control socket" + (" (--turn-backend coturn)" if ck.turn_backend else ""),
                   "with coturn use 'stop', 'start' or 'restart'; or run this scenario on the embedded backend")
            return False
        if verb == "faults":
            try:
                Faults.from_dict(spec.faults)
            except (ValueError, TypeError) as exc:
                ck.err(path + ("faults",), f"not a fault set: {exc}",
                       "see docs/turn.md, 'Faults': drop, delay, error, stop_relay, permission_lifetime")
                return False
        # the server's state along the timeline (steps at one time in file order)
        stopped_at = ck.state(cls.name)
        stopped = stopped_at.setdefault(spec.node, False)
        if verb == "start" and not stopped:
            ck.err(path + ("start",), f"the TURN server on {spec.node} is running at {format_duration(step.at)}",
                   "start it again only after a step that stops it")
            return False
        if verb != "start" and verb != "stop" and stopped:
            ck.err(path + (verb,), f"the TURN server on {spec.node} is stopped at {format_duration(step.at)}",
                   "add a 'start: true' step before this one")
            return False
        if verb == "stop" and stopped:
            ck.err(path + ("stop",), f"the TURN server on {spec.node} is stopped already",
                   "stop it once; 'start: true' brings it back")
            return False
        stopped_at[spec.node] = verb == "stop" or (stopped and verb != "start")
        step.name = f"{spec.node}-{verb.replace('_', '-')}"
        return True

    @classmethod
    def start(cls, run, step) -> None:
        run.event(f"turn:{step.spec.node}", turn_action(run.network, step.spec))


def _turn_service(network, node: str) -> RunningService:
    rs = next((r for r in network.services if r.service == "turn" and r.node == node), None)
    if rs is None:
        raise ActionError(f"no TURN server runs on {node}")
    return rs


def backend_of(rs: RunningService) -> str:
    return rs.config.get("backend", "embedded")


def turn_action(network, spec) -> str:
    """Do the step's one verb to the TURN server on ``spec.node``; say what was done."""
    rs = _turn_service(network, spec.node)
    verb = spec.verbs[0]
    if verb == "stop":
        return _stop(rs)
    if verb == "start":
        return _start(network, rs)
    if verb == "restart" and backend_of(rs) == "coturn":
        _stop(rs)
        return "coturn restarted: " + _start(network, rs)
    sock = rs.config.get("control")
    if not sock:
        raise ActionError(f"the TURN server on {spec.node} has no control socket")
    request = {"restart": True} if verb == "restart" else \
        {"faults": spec.faults} if verb == "faults" else {"expire_permissions": True}
    try:
        answer = control(sock, request)
    except OSError as exc:
        raise ActionError(f"the TURN server on {spec.node} did not take '{verb}': {exc}") from exc
    if verb == "restart":
        return "restarted: every allocation and nonce lost"
    if verb == "faults":
        return "faults now " + (", ".join(k for k, v in spec.faults.items() if v) or "none")
    return f"every permission expired ({answer.get('allocations', 0)} allocations kept)"


def _stop(rs: RunningService) -> str:
    if rs.proc.poll() is None:
        rs.proc.terminate()
        try:
            rs.proc.wait(timeout=3)
        except subprocess.TimeoutExpired:
            rs.proc.kill()
            rs.proc.wait()
    return f"stopped (pid {rs.proc.pid})"


def _start(network, rs: RunningService, timeout: float = 5.0) -> str:
    """Start the service's program again in its host, wait until it listens."""
    if not rs.argv:
        raise ActionError(f"{rs.service} on {rs.node} cannot be started again (its command is unknown)")
    t0 = time.monotonic()
    with open(rs.log_path, "ab") as log:
        rs.proc = network.nodes[rs.node].popen(rs.argv, stdin=subprocess.DEVNULL, stdout=log,
                                               stderr=subprocess.STDOUT, env=rs.env or None)
    failed = f"{rs.service} on {rs.node} did not start again (see {rs.log_path})"

    def listening() -> bool:
        if rs.proc.poll() is not None:
            raise ActionError(failed)
        return _listening(network.nodes[rs.node], rs.listens)
    try:
        wait_until(listening, timeout, 0.02, what=f"{rs.service} on {rs.node} listening")
    except TimedOut:
        raise ActionError(failed) from None
    return f"started (pid {rs.proc.pid}), listening after {(time.monotonic() - t0) * 1000:.0f} ms"
