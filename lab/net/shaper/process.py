"""The lab's shaper seen from the lab: the ``shaper`` impairment backend.

One shaper process per lab (``daemon.py``), started on first use inside the lab (the
namespace of its first node), detached so that it outlives a short-lived ``icelab link
set``, and marked with ICELAB_LAB so that the lab's cleanup ends it. Settings go to it over
the lab's control channel (lab/core/control.py; messages in ``messages.py``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from lab.core.control import ControlError, NotListening, ask
from lab.core.supervise import TimedOut, read_text, wait_until
from lab.model.impairment import Impairment
from lab.net.shaper.backend import ImpairmentBackend, ShapingError, register
from lab.net.shaper.daemon import socket_path
from lab.net.state import run_dir

ROOT = Path(__file__).resolve().parents[3]
START_TIMEOUT = 10.0


def request(st, req: dict, start: bool = True, timeout: float = 10.0) -> dict:
    """One request to the lab's shaper, started first when it is not running (``start``);
    its answer, or ShapingError with the shaper's refusal."""
    path = socket_path(st.name)
    try:
        reply = ask(path, req, timeout)
    except NotListening:
        if not start:
            raise ShapingError(f"the shaper of lab '{st.name}' is not running: its impaired links do not "
                               f"forward; 'icelab down {st.name}' and up again") from None
        launch(st)
        reply = ask(path, req, timeout)
    if not reply.get("ok"):
        raise ShapingError(f"shaper: {reply.get('error', 'no answer')}")
    return reply


def answering(lab: str, timeout: float = 2.0) -> bool:
    try:
        return bool(ask(socket_path(lab), {"op": "ping"}, timeout).get("ok"))
    except ControlError:
        return False


def launch(st, timeout: float = START_TIMEOUT) -> None:
    """Start the lab's shaper and wait until it answers."""
    if shutil.which("iptables-legacy") is None:
        raise ShapingError("iptables-legacy is missing (the shaper queues packets with it): run 'sudo make setup'")
    _node, ns = next(iter(st.nodes.items()))
    env = dict(os.environ, ICELAB_LAB=st.name, ICELAB_NODE="shaper",
               PYTHONPATH=os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p))
    log = run_dir() / st.name / "shaper.log"
    with log.open("ab") as fh:
        # setsid -f returns at once: the shaper's readiness is its answer, waited for below
        subprocess.run(["nsenter", "-t", str(ns.pid), "-n", "--", "setsid", "-f",
                        sys.executable, "-m", "lab.net.shaper.daemon", st.name],
                       env=env, stdin=subprocess.DEVNULL, stdout=fh, stderr=fh, check=True, timeout=10)
    try:
        wait_until(lambda: answering(st.name, timeout=1.0), timeout, interval=0.02, what="the shaper answering")
    except TimedOut:
        raise ShapingError(f"the shaper of lab '{st.name}' did not start:\n{read_text(log)[-800:]}") from None


@register
class Shaper(ImpairmentBackend):
    name = "shaper"

    def start(self, st) -> None:
        if not answering(st.name):
            launch(st)

    def apply(self, st, link: int, per_dir: dict[str, Impairment]) -> None:
        request(st, {"op": "set", "link": link, **{d: imp.to_wire() for d, imp in per_dir.items()}})

    def status(self, st) -> dict:
        try:
            return request(st, {"op": "show"}, start=False).get("links", {})
        except (ShapingError, ControlError):
            return {}

    def running(self, st) -> bool:
        return answering(st.name)
