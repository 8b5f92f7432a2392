"""Realisation of a topology in Mininet: namespaces, links, bridges, routes, cleanup."""

from .network import Cleaned, LabError, Network, clean_all, clean_lab, orphans

__all__ = ["Network", "LabError", "Cleaned", "clean_all", "clean_lab", "orphans"]
