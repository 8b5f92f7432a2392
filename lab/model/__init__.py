"""Topology model: schema, validation, addressing and routing. Nothing here touches the kernel.

The names below are loaded on first use (start-up time): the TURN server and the shaper run
inside lab nodes and import one leaf module each (``lab.model.turn``, ``lab.model.impairment``);
loading the whole model with it (pydantic schemas, networkx) would add about 0.35 s to their
start.
"""

import importlib

from lab.core.errors import InputError, Problem

__all__ = ["InputError", "Problem", "Topology", "Node", "Interface", "Link", "Route", "Subnet",
           "load_topology"]

_LAZY = {"Topology": "topology", "Node": "topology", "Interface": "topology", "Link": "topology",
         "Route": "topology", "Subnet": "topology", "load_topology": "validate"}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'lab.model' has no attribute {name!r}")
