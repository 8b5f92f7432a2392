"""Timeline actions that change a running lab's services and firewalls: ``turn`` and ``rule``.

``turn`` acts on a TURN server the way an operator or an outage would (docs/scenarios.md):

- ``stop``: the process ends (SIGTERM, as ``systemctl stop``): nothing answers on 3478, the
  kernel answers ICMP port unreachable. Both backends.
- ``start``: the stopped server starts again with the same config; the step returns once it
  listens. Both backends.
- ``restart``: every allocation and nonce is lost. The embedded server does it through its
  control socket, in place (its sockets stay open, as a quick restart behind a load balancer
  looks to clients); coturn has no such socket, so its process is stopped and started again.
- ``faults`` and ``expire_permissions``: through the control socket (lab/services/turn/
  faults.py); the embedded server only (``load.py`` refuses them with coturn).

``rule`` adds a rule to a firewall's live nftables table (before the default rule of its
direction, with the next free number) or deletes one by name or number. The table is
changed in place, never reloaded, so every other rule keeps its counter; a deleted rule's
last counter is kept for the report.
"""

from __future__ import annotations

import subprocess
import time

from lab.net.services import RunningService


def _turn_service(network, node: str) -> RunningService:
    rs = next((r for r in network.services if r.service == "turn" and r.node == node), None)
    if rs is None:
        raise RuntimeError(f"no TURN server runs on {node}")
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
    from lab.services.turn.faults import control
    sock = rs.config.get("control")
    if not sock:
        raise RuntimeError(f"the TURN server on {spec.node} has no control socket")
    request = {"restart": True} if verb == "restart" else \
        {"faults": spec.faults} if verb == "faults" else {"expire_permissions": True}
    try:
        answer = control(sock, request)
    except OSError as exc:
        raise RuntimeError(f"the TURN server on {spec.node} did not take '{verb}': {exc}") from exc
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
    from lab.net.services import _listening
    if not rs.argv:
        raise RuntimeError(f"{rs.service} on {rs.node} cannot be started again (its command is unknown)")
    t0 = time.monotonic()
    with open(rs.log_path, "ab") as log:
        rs.proc = network.nodes[rs.node].popen(rs.argv, stdin=subprocess.DEVNULL, stdout=log,
                                               stderr=subprocess.STDOUT, env=rs.env or None)
    while not _listening(network.nodes[rs.node], rs.listens):
        if rs.proc.poll() is not None or time.monotonic() - t0 > timeout:
            raise RuntimeError(f"{rs.service} on {rs.node} did not start again (see {rs.log_path})")
        time.sleep(0.02)
    return f"started (pid {rs.proc.pid}), listening after {(time.monotonic() - t0) * 1000:.0f} ms"


def rule_action(network, spec, before: int | None = None) -> tuple[str, int, dict | None]:
    """Add or delete the step's rule on the live firewall: what was done, the rule's number,
    and for a deleted rule its last counter (a dict as in the firewall observations)."""
    from lab.net import firewall
    pid = network.node(spec.node).pid
    policy = network.topo.nodes[spec.node].policy
    if spec.add is not None:
        try:
            rule = firewall.add(network, spec.node, dict(spec.add), before)
        except (ValueError, RuntimeError) as exc:
            raise RuntimeError(f"adding a rule to {spec.node}: {exc}") from exc
        return f"added rule {rule.number} ({rule.name}, {rule.direction} {rule.action})", rule.number, None
    gone = firewall.delete_rule(pid, policy, spec.delete)
    return (f"deleted rule {gone.number} ({gone.name}) after it counted {gone.packets} packets", gone.number,
            dict(gone.to_dict(), action=gone.action, sentence=gone.sentence()))
