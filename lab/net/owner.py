"""Stopping a lab from another process (`icelab down`): its owner (the `icelab up`, `run` ...
that built it) is asked to stop as Ctrl-C would ask it, so that it tears the lab down itself."""

from __future__ import annotations

import os
import signal
from typing import Callable

from lab.core.supervise import TimedOut, wait_until

from .state import LabState


def stop_owner(st: LabState, timeout: float = 20.0, on_kill: Callable[[int], None] = lambda pid: None) -> None:
    """SIGTERM to the owner, then wait until it is gone; after ``timeout`` seconds
    ``on_kill(pid)`` and SIGKILL (its lab is left for ``clean_lab``)."""
    if not st.owner_alive():
        return
    os.kill(st.owner_pid, signal.SIGTERM)
    try:
        wait_until(lambda: not st.owner_alive(), timeout, 0.05, what=f"lab '{st.name}' stopping")
    except TimedOut:
        on_kill(st.owner_pid)
        os.kill(st.owner_pid, signal.SIGKILL)
