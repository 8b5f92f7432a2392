"""Quantities people write in files and on the command line: durations, percentages and bounds.

Every parser returns ``(value, error, hint)`` so that callers can report a Problem with the
file's line and path instead of raising from deep inside.

A bare number is refused on purpose: "8" could be seconds or milliseconds, and a wrong guess
would turn a failing scenario into a passing one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_DURATION = re.compile(r"^\s*(-?\d+(?:\.\d+)?)\s*(ms|s|min)\s*$")
_SCALE = {"ms": 0.001, "s": 1.0, "min": 60.0}
DURATION_HINT = "write a number with a unit: 300ms, 8s, 1.5s or 2min"


def _number_with_unit(text: object, pattern: re.Pattern, what: str, hint: str,
                     bare_hint: str) -> tuple[re.Match | None, str | None, str | None]:
    """The shared front of every quantity parser: a string, not a bare number, that matches."""
    if isinstance(text, bool) or not isinstance(text, (str, int, float)):
        return None, f"{text!r} is not a {what}", hint
    if isinstance(text, (int, float)):
        return None, f"{text} has no unit", bare_hint.format(text)
    m = pattern.match(text)
    if not m:
        return None, f"'{text}' is not a {what}", hint
    return m, None, None


def parse_duration(text: object, allow_zero: bool = True) -> tuple[float | None, str | None, str | None]:
    """'300ms' -> 0.3 (seconds)."""
    m, err, hint = _number_with_unit(text, _DURATION, "duration", DURATION_HINT, "write {0}s or {0}ms")
    if err:
        return None, err, hint
    value = float(m.group(1)) * _SCALE[m.group(2)]
    if value < 0:
        return None, f"'{text}' is negative", "durations count from the start of the scenario: 0s or later"
    if value == 0 and not allow_zero:
        return None, f"'{text}' must be more than zero", None
    return value, None, None


@dataclass(frozen=True)
class Bound:
    """A time bound from an expectation: ``< 300ms``, ``<= 8s``, ``>= 1s`` or ``8s +/- 0.2s``."""

    low: float | None
    high: float | None
    text: str

    def holds(self, value: float) -> bool:
        return (self.low is None or value >= self.low) and (self.high is None or value <= self.high)


_BOUND = re.compile(r"^\s*(<=|<|>=|>)\s*(.+)$")
_TOLERANCE = re.compile(r"^\s*(.+?)\s*(?:\+/-|±|\+-)\s*(.+)$")
BOUND_HINT = "write '< 300ms', '<= 8s', '>= 1s' or '8s +/- 0.2s'"


_PERCENT = re.compile(r"^\s*(-?\d+(?:\.\d+)?)\s*%\s*$")
PERCENT_HINT = "write a percentage: 0%, 1%, 2.5%"
PERCENT_BOUND_HINT = "write '< 1%', '<= 5%', '>= 3%' or '5% +/- 2%'"


def parse_percent(text: object) -> tuple[float | None, str | None, str | None]:
    """'2.5%' -> 0.025 (a fraction). A bare number is refused: 0.05 or 5 could both mean 5 %."""
    m, err, hint = _number_with_unit(text, _PERCENT, "percentage", PERCENT_HINT, "write {0}%")
    if err:
        return None, err, hint
    value = float(m.group(1)) / 100
    if not 0 <= value <= 1:
        return None, f"'{text}' is outside 0-100 %", PERCENT_HINT
    return value, None, None


def parse_bound(text: object, quantity=parse_duration, what: str = "time bound",
                hint: str = BOUND_HINT) -> tuple[Bound | None, str | None, str | None]:
    """A bound on a quantity: times by default; ``quantity=parse_percent`` for ratios."""
    if not isinstance(text, str):
        return None, f"{text!r} is not a {what}", hint
    m = _TOLERANCE.match(text)
    if m:
        centre, e1, _ = quantity(m.group(1))
        tol, e2, _ = quantity(m.group(2))
        if e1 or e2:
            return None, f"'{text}' is not a {what}: {e1 or e2}", hint
        return Bound(max(0.0, centre - tol), centre + tol, text.strip()), None, None
    m = _BOUND.match(text)
    if m:
        value, e, _ = quantity(m.group(2))
        if e:
            return None, f"'{text}' is not a {what}: {e}", hint
        op = m.group(1)
        if op.startswith("<"):
            return Bound(None, value, text.strip()), None, None
        return Bound(value, None, text.strip()), None, None
    return None, f"'{text}' is not a {what}", hint


def parse_percent_bound(text: object) -> tuple[Bound | None, str | None, str | None]:
    return parse_bound(text, parse_percent, "percentage bound", PERCENT_BOUND_HINT)


def format_duration(seconds: float) -> str:
    if seconds < 0.001:
        return f"{seconds * 1000:.3f} ms"
    if seconds < 1:
        return f"{seconds * 1000:.1f} ms"
    return f"{seconds:.2f} s"
