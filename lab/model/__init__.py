"""Topology model: schema, validation, addressing and routing. Nothing here touches the kernel."""

from lab.core.errors import InputError, Problem
from .topology import Interface, Link, Node, Route, Subnet, Topology
from .validate import load_topology

__all__ = ["InputError", "Problem", "Topology", "Node", "Interface", "Link", "Route", "Subnet",
           "load_topology"]
