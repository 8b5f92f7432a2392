"""`icelab probe`: the endpoint probe (lab/probe/) on this machine, as an ordinary user.
This module imports nothing of the lab's network layer: the command runs where there is no
Mininet (tests/probe/test_imports.py)."""

from __future__ import annotations

from lab.probe.cli import run


def probe(args) -> int:
    return run(args)
