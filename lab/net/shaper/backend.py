"""The impairment backend interface: what applies a lab's link impairments to the kernel.

Two implementations: ``netem`` (``netem.py``: a qdisc per direction, where the kernel has
sch_netem) and ``shaper`` (``process.py``: the lab's own NFQUEUE shaper process). A lab
chooses one when it is built (``lab.net.shaping.setup``) and its state file keeps the name,
so every later change (``icelab link set``, a scenario's link step) goes through the same
backend: two backends never shape one lab. ``REGISTRY`` maps names to implementations; a
new backend is one class with ``@register``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar

from lab.net.shaper import ShapingError
from lab.model.impairment import Impairment


class ImpairmentBackend(ABC):
    """Applies impairments to one running lab. ``st`` is the lab's LabState; settings are
    per direction in the file's orientation (``a2b``: from the link's end a to end b)."""

    name: ClassVar[str]

    def start(self, st) -> None:
        """Make the backend ready to take settings (a process to start, say); idempotent."""

    @abstractmethod
    def apply(self, st, link: int, per_dir: dict[str, Impairment]) -> None:
        """Replace the settings of the given directions of ``link``, at once."""

    def status(self, st) -> dict:
        """Live state by link index (str) and direction: ``{"counters": {...}, "held": n,
        "where": "..."}``; {} when the backend keeps none (or cannot say)."""
        return {}

    def running(self, st) -> bool:
        """Is what holds the impairments there? (True for a backend with nothing to run.)"""
        return True


REGISTRY: dict[str, type[ImpairmentBackend]] = {}


def register(cls: type[ImpairmentBackend]) -> type[ImpairmentBackend]:
    REGISTRY[cls.name] = cls
    return cls


def get(name: str) -> ImpairmentBackend:
    try:
        return REGISTRY[name]()
    except KeyError:
        raise ShapingError(f"unknown impairment backend '{name}': known are {', '.join(sorted(REGISTRY))}") from None
