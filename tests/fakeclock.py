"""An asyncio event loop on a fake clock, for tests of timing logic (timers, timeouts, retries)
where the point is the logic, not real time.

``loop.time()`` starts at 0 and moves only when the loop would wait: with nothing ready, it
jumps to its next timer at once instead of sleeping. An 8 s timer then takes microseconds and
fires at exactly 8.0. Only for code that waits on the loop's timers alone (asyncio.sleep,
wait_for, call_later): real I/O is still polled, but a jump never waits for it.

    out = run(RTCSession(...).run())           # like asyncio.run, on the fake clock
"""

from __future__ import annotations

import asyncio
import selectors
from typing import Any, Coroutine


class _JumpingSelector(selectors.DefaultSelector):
    """Never blocks for a timeout: it moves the loop's clock by it instead."""

    loop: "FakeClockLoop"

    def select(self, timeout: float | None = None):
        ready = super().select(0)
        if ready or timeout == 0:
            return ready
        if timeout is None:          # no timer at all: only real I/O (or another thread) can wake it
            return super().select(None)
        self.loop.now += timeout
        return []


class FakeClockLoop(asyncio.SelectorEventLoop):
    def __init__(self) -> None:
        selector = _JumpingSelector()
        self.now = 0.0
        super().__init__(selector)
        selector.loop = self

    def time(self) -> float:
        return self.now


def run(coro: Coroutine[Any, Any, Any]) -> Any:
    """``asyncio.run`` on a FakeClockLoop."""
    loop = FakeClockLoop()
    try:
        asyncio.set_event_loop(loop)
        return loop.run_until_complete(coro)
    finally:
        asyncio.set_event_loop(None)
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()
