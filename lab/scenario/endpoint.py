"""The endpoint probe (``lab.probe``) run inside a lab node, as an engineer runs it on an
agent's machine: ``python -m lab.probe --media-info ... --json`` against the lab's TURN and
signalling, with a media info the lab's cloud registered and the lab CA. What the
``probe-endpoint`` scenario action and the probe's confusion matrix run."""

from __future__ import annotations

import json
import subprocess
import sys

from lab.core.errors import LabError

#: the probe's own deadline is 13 s; the interpreter's start in a busy lab adds a little
TIMEOUT = 25.0


def agent_os(node) -> str | None:
    """The OS whose ports the probe sends from: the one the node's ephemeral range belongs
    to (the model keeps the range, not the OS); None: the machine's own."""
    ports = getattr(node, "ephemeral_ports", None)
    if not ports:
        return None
    return "windows" if ports[0] >= 49152 else "linux"


def probe_command(network, node: str, os_name: str | None = None, extra: list[str] | None = None) -> list[str]:
    calls = sorted((network.state.dir / "calls").glob("adhoc-*.json"))
    if not calls:
        raise LabError(f"lab '{network.topo.name}' has no media info to probe with: its topology needs hosts "
                       "with the turn and signalling services")
    os_name = os_name or agent_os(network.topo.nodes[node])
    # the media info is only read (no call is placed): the adhoc call stays available
    return [sys.executable, "-m", "lab.probe", "--media-info", str(calls[0]), "--ca",
            str(network.state.dir / "pki" / "ca.pem"), "--json",
            *(["--os", os_name] if os_name else []), *(extra or [])]


def start(network, node: str, os_name: str | None = None, extra: list[str] | None = None) -> subprocess.Popen:
    return network.node(node).popen(probe_command(network, node, os_name, extra),
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def finish(proc: subprocess.Popen, timeout: float = TIMEOUT) -> dict:
    """The probe's result (verdict, findings, measurements) and its exit status."""
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        return {"error": f"the probe did not end within {timeout:.0f} s"}
    try:
        result = json.loads(out)
    except ValueError:
        return {"error": f"the probe failed (exit {proc.returncode}): {err.decode(errors='replace')[-400:]}"}
    result["exit_status"] = proc.returncode
    return result


def run_probe(network, node: str, os_name: str | None = None, extra: list[str] | None = None) -> dict:
    return finish(start(network, node, os_name, extra))
