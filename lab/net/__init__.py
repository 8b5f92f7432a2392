"""Realisation of a topology in Mininet: namespaces, links, bridges, routes, cleanup.

The names below are loaded on first use: tools that run inside lab nodes
(``python -m lab.net.probe``) must start in milliseconds, without importing Mininet.
"""

__all__ = ["Network", "Cleaned", "clean_all", "clean_lab", "orphans"]


def __getattr__(name: str):
    if name in __all__:
        from . import network       # start-up time: see above (Mininet only when asked for)
        return getattr(network, name)
    raise AttributeError(f"module 'lab.net' has no attribute {name!r}")
