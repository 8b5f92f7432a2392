"""Ad-hoc calls on a lab that is up (`icelab call`), from another process than its owner.

When a lab with a cloud (hosts with the turn and signalling services) is built, the cloud
registers calls for this: files ``<lab dir>/calls/adhoc-1.json`` ... ``adhoc-20.json``. Placing
a call takes the lowest one and renames it ``adhoc-N.used``, so that no call is placed twice;
the softphone (``python -m lab.agent``) then runs in the agent's network namespace.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from lab.core.errors import LabError

from .state import LabState, NodeState


class NoCallLeft(LabError):
    """Every registered call of the lab was placed, or the lab has no cloud."""


def take_call(st: LabState) -> Path:
    """The lowest registered call, marked used (renamed ``.used``); its path."""
    calls = sorted((st.dir / "calls").glob("adhoc-*.json"), key=lambda p: int(p.stem.split("-")[1]))
    if not calls:
        raise NoCallLeft(f"lab '{st.name}' has no call left to place\n    hint: its topology needs hosts with the "
                         "turn and signalling services; a lab registers 20 calls: restart it for more")
    used = calls[0].with_suffix(".used")
    calls[0].rename(used)
    return used


def place_call(st: LabState, agent: str, node: NodeState, talk: float = 3.0, profile: str = "chrome",
               engine: str = "emulated", mdns: bool = False, text: bool = True) -> int:
    """Run the softphone of ``agent`` for one call; its timeline goes to our stdout (as text, or
    as JSON lines then the outcome). Returns the softphone's exit status."""
    used = take_call(st)
    cfg = st.dir / f"agent-{agent}-{used.stem}.json"
    cfg.write_text(json.dumps({"call": str(used), "ca": str(st.dir / "pki" / "ca.pem"), "talk_time": talk,
                               "profile": profile, "engine": engine, "mdns": mdns}))
    argv = ["nsenter", "-t", str(node.pid), "-n", "--", sys.executable, "-m", "lab.agent", "--config", str(cfg)]
    if text:
        argv.append("--text")
    env = dict(os.environ, ICELAB_LAB=st.name, ICELAB_NODE=agent)
    return subprocess.run(argv, env=env).returncode
