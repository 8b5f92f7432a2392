"""The call's event timeline: every state change, candidate, signalling message and error,
stamped with seconds since the session began (monotonic clock)."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any, Callable, TextIO


@dataclass
class Event:
    t: float
    kind: str          # state | candidate | ice | stun | signalling | error | media | quality | info
    name: str
    data: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"t": round(self.t, 4), "kind": self.kind, "name": self.name, **self.data}


class Timeline:
    """Append-only list of events; optionally streamed as JSON lines as they happen."""

    def __init__(self, clock: Callable[[], float] = time.monotonic, stream: TextIO | None = None):
        self._clock = clock
        self.t0 = clock()
        self.events: list[Event] = []
        self._stream = stream

    def now(self) -> float:
        return self._clock() - self.t0

    def add(self, kind: str, name: str, **data: Any) -> Event:
        ev = Event(self.now(), kind, name, data)
        self.events.append(ev)
        if self._stream is not None:
            self._stream.write(json.dumps(ev.as_dict(), default=str) + "\n")
            self._stream.flush()
        return ev

    def report(self, key: str, data: dict[str, Any]) -> None:
        """A line for the stream's reader only (``{key: {"t": .., **data}}``), not an event of
        the timeline: what a watcher wants as it happens (lab/agent/levels.py)."""
        if self._stream is not None:
            self._stream.write(json.dumps({key: {"t": round(self.now(), 4), **data}}, default=str) + "\n")
            self._stream.flush()

    def first(self, kind: str, name: str | None = None) -> Event | None:
        return next((e for e in self.events if e.kind == kind and (name is None or e.name == name)), None)

    def states(self) -> list[str]:
        return [e.name for e in self.events if e.kind == "state"]

    def as_list(self) -> list[dict[str, Any]]:
        return [e.as_dict() for e in self.events]

    def render(self) -> str:
        return render(self.as_list())


def render(events: list[dict[str, Any]]) -> str:
    """A human-readable timeline (from ``Timeline.as_list()`` or JSON lines), one event a line."""
    lines = []
    for e in events:
        extra = " ".join(f"{k}={v}" for k, v in e.items() if k not in ("t", "kind", "name"))
        lines.append(f"{e['t'] * 1000:9.1f} ms  {e['kind']:<10} {e['name']} {extra}".rstrip())
    return "\n".join(lines)
