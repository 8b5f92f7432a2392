"""The LAB and NODE arguments of the commands that act on a lab that is up: checked against
the lab's state file, with a hint when they name nothing."""

from __future__ import annotations

from lab.core.errors import UsageError, did_you_mean
from lab.net import procs
from lab.net.state import LabState, NodeState, get

from .console import Refused, hinted


def lab_state(name: str) -> LabState:
    st = get(name)
    if st is None:
        raise UsageError(hinted(f"no lab named '{name}' is up", "'icelab status' lists the labs"))
    return st


def running_node(lab: str, node: str) -> tuple[LabState, NodeState]:
    st = lab_state(lab)
    ns = st.nodes.get(node)
    if ns is None:
        raise UsageError(hinted(f"lab '{lab}' has no node '{node}'", did_you_mean(node, st.nodes, "nodes")))
    if not procs.alive(ns.pid, ns.started) or st.status != "running":
        raise Refused(f"lab '{lab}' is not running (status {st.status})")
    return st, ns
