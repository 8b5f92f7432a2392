"""Quantities people write in files and on the command line: durations, percentages, rates
and bounds. One reader for every file format: topologies (link impairments), scenarios
(``at``, probe and call times, expectation bounds) and sweep parameters.

A duration is a number with one of us, µs, ms, s, min; a percentage ends in %; a rate is
in bit, kbit, mbit or gbit (tc's units). A bare number is refused on purpose, "8" could be
seconds or milliseconds and a wrong guess would turn a failing scenario into a passing one;
a bare 0 is the one number that means the same in every unit, so it is taken.

Two wordings share the readers: scenarios' parsers return ``(value, error, hint)`` so that
callers report a Problem with the file's line and path; a link's settings (``parse_time``,
``parse_percent``, ``parse_rate``) append ``(path, message, hint)`` issues, each naming
the setting.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

_NUMBER = r"(-?(?:\d+(?:\.\d*)?|\.\d+))"
_DURATION = re.compile(rf"^\s*{_NUMBER}\s*(us|µs|ms|s|min)\s*$")
_PERCENT = re.compile(rf"^\s*{_NUMBER}\s*%\s*$")
_RATE = re.compile(rf"^\s*{_NUMBER}\s*(bit|kbit|mbit|gbit)\s*$", re.IGNORECASE)
TIME_UNITS = {"us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "min": 60.0}
RATE_UNITS = {"bit": 1, "kbit": 1e3, "mbit": 1e6, "gbit": 1e9}
DURATION_HINT = "write a number with a unit: 300ms, 8s, 1.5s or 2min"


@dataclass(frozen=True)
class Reading:
    """One quantity read: its value (seconds, a fraction, bit/s) or why there is none.

    ``fault`` is None (read), ``"type"`` (not a string or a number), ``"bare"`` (a number
    other than 0 without its unit), ``"syntax"`` (no number-and-unit) or ``"negative"``
    (read, below zero: ``value`` holds it)."""

    value: float | None
    fault: str | None = None


def _read(text: object, pattern: re.Pattern, convert) -> Reading:
    if isinstance(text, bool) or not isinstance(text, (str, int, float)):
        return Reading(None, "type")
    if isinstance(text, (int, float)):
        return Reading(0.0) if text == 0 else Reading(None, "bare")
    m = pattern.match(text)
    if not m:
        return Reading(None, "syntax")
    value = convert(float(m.group(1)), m)
    return Reading(value, "negative") if value < 0 else Reading(value)


def read_duration(text: object) -> Reading:
    """'300ms' -> 0.3 (seconds)."""
    return _read(text, _DURATION, lambda x, m: x * TIME_UNITS[m.group(2)])


def read_percent(text: object) -> Reading:
    """'2.5%' -> 0.025 (a fraction)."""
    return _read(text, _PERCENT, lambda x, m: x / 100)


def read_rate(text: object) -> Reading:
    """'1.5mbit' -> 1.5e6 (bit/s)."""
    return _read(text, _RATE, lambda x, m: x * RATE_UNITS[m.group(2).lower()])


# -- scenarios: (value, error, hint) ----------------------------------------------------------


def parse_duration(text: object, allow_zero: bool = True) -> tuple[float | None, str | None, str | None]:
    """'300ms' -> 0.3 (seconds)."""
    r = read_duration(text)
    if r.fault == "type":
        return None, f"{text!r} is not a duration", DURATION_HINT
    if r.fault == "bare":
        return None, f"{text} has no unit", f"write {text}s or {text}ms"
    if r.fault == "syntax":
        return None, f"'{text}' is not a duration", DURATION_HINT
    if r.fault == "negative":
        return None, f"'{text}' is negative", "durations count from the start of the scenario: 0s or later"
    if r.value == 0 and not allow_zero:
        return None, f"'{text}' must be more than zero", None
    return r.value, None, None


@dataclass(frozen=True)
class Bound:
    """A bound from an expectation: ``< 300ms``, ``<= 8s``, ``>= 1s``, ``8s +/- 0.2s``, ``< 1%``."""

    low: float | None
    high: float | None
    text: str

    def holds(self, value: float) -> bool:
        return (self.low is None or value >= self.low) and (self.high is None or value <= self.high)


_BOUND = re.compile(r"^\s*(<=|<|>=|>)\s*(.+)$")
_TOLERANCE = re.compile(r"^\s*(.+?)\s*(?:\+/-|±|\+-)\s*(.+)$")
BOUND_HINT = "write '< 300ms', '<= 8s', '>= 1s' or '8s +/- 0.2s'"

PERCENT_HINT = "write a percentage: 0%, 1%, 2.5%"
PERCENT_BOUND_HINT = "write '< 1%', '<= 5%', '>= 3%' or '5% +/- 2%'"


def parse_percent(text: object) -> tuple[float | None, str | None, str | None]:
    """'2.5%' -> 0.025 (a fraction). A bare number other than 0 is refused: 0.05 or 5 could
    both mean 5 %."""
    r = read_percent(text)
    if r.fault == "type":
        return None, f"{text!r} is not a percentage", PERCENT_HINT
    if r.fault == "bare":
        return None, f"{text} has no unit", f"write {text}%"
    if r.fault == "syntax":
        return None, f"'{text}' is not a percentage", PERCENT_HINT
    if r.fault == "negative" or r.value > 1:
        return None, f"'{text}' is outside 0-100 %", PERCENT_HINT
    return r.value, None, None


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


# -- settings (link impairments, sweep values): issues naming the setting ----------------------

#: (path relative to the value, message, hint)
Issue = tuple[tuple, str, "str | None"]

TIME_HINT = "write a time with its unit: 20ms, 0.2s or 500us"
SETTING_PERCENT_HINT = "write a percentage from 0% to 100%, e.g. 2%"
RATE_HINT = "write a rate in bit/s with its unit: 100kbit, 1mbit, 1.5gbit (tc's units; not bytes)"


def _unit_of(text: str) -> str:
    return re.sub(r"^[\s\d.]*", "", text)


def time_setting(value: Any, path: tuple, issues: list[Issue], what: str,
                 longest: float | None = None) -> float | None:
    """A setting's time (``delay: 20ms``): seconds, or None with an issue appended."""
    if isinstance(value, bool) or value is None:
        issues.append((path, f"{what} must be a time like 20ms, not {value!r}", TIME_HINT))
        return None
    r = read_duration(value if isinstance(value, (int, float)) else str(value))
    if r.fault == "bare":
        issues.append((path, f"{what} {value!r} has no unit", f"{TIME_HINT} (a bare number could mean s or ms)"))
        return None
    text = str(value)
    if r.fault == "negative" or (r.fault and text.strip().startswith("-")):
        issues.append((path, f"{what} cannot be negative ({text})",
                       "a link cannot deliver packets before they are sent; use 0ms or more"))
        return None
    if r.fault:
        unit = _unit_of(text)
        issues.append((path, f"'{text}' is not a time", f"unknown unit '{unit}'; {TIME_HINT}" if unit else TIME_HINT))
        return None
    if longest is not None and r.value > longest:
        issues.append((path, f"{what} {text} is longer than {longest:g} s", "a network path adds milliseconds to seconds; check the unit"))
        return None
    return r.value


def percent_setting(value: Any, path: tuple, issues: list[Issue], what: str,
                    below_100: bool = False) -> float | None:
    """A setting's probability (``loss: 2%``): a fraction, or None with an issue appended."""
    r = read_percent(value)
    if r.fault == "bare":
        issues.append((path, f"{what} {value!r} has no '%'",
                       f"{SETTING_PERCENT_HINT} (a bare number could mean a fraction or percent)"))
        return None
    if r.fault in ("type", "syntax"):
        issues.append((path, f"'{value}' is not a percentage", SETTING_PERCENT_HINT))
        return None
    if r.fault == "negative" or r.value > 1 or (below_100 and r.value >= 1):
        limit = "below 100%" if below_100 else "from 0% to 100%"
        issues.append((path, f"{what} {value} is out of range", f"a probability is {limit}"))
        return None
    return r.value


def rate_setting(value: Any, path: tuple, issues: list[Issue]) -> float | None:
    """A setting's rate (``rate: 1mbit``): bit/s, or None with an issue appended."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if value == 0:
            # rate 0 is "no limit" inside the lab, the opposite of what a bare 0 seems to say
            issues.append((path, "rate 0 has no unit, and a rate of 0 would mean no limit at all, not a cut link",
                           "leave 'rate' out for no limit, or use loss: 100% to cut the link; " + RATE_HINT))
            return None
        issues.append((path, f"rate {value!r} has no unit", RATE_HINT))
        return None
    r = read_rate(value if isinstance(value, (int, float)) and not isinstance(value, bool) else str(value))
    text = str(value)
    if r.fault == "negative" or (r.fault and text.strip().startswith("-")):
        issues.append((path, f"rate cannot be negative ({text})", RATE_HINT))
        return None
    if r.fault:
        unit = _unit_of(text)
        issues.append((path, f"'{text}' is not a rate", f"unknown unit '{unit}'; {RATE_HINT}" if unit else RATE_HINT))
        return None
    if 0 < r.value < 8000:
        issues.append((path, f"rate {text} is too low (under 8kbit)", "one 1500-byte packet would take over a second"))
        return None
    return r.value


# -- text ---------------------------------------------------------------------------------------


def format_duration(seconds: float) -> str:
    if seconds < 0.001:
        return f"{seconds * 1000:.3f} ms"
    if seconds < 1:
        return f"{seconds * 1000:.1f} ms"
    return f"{seconds:.2f} s"


def format_time(s: float) -> str:
    """Seconds in a file's own words: 0ms, 20ms, 2s, 500us."""
    if s == 0:
        return "0ms"
    if s >= 1 and abs(s * 1000 - round(s * 1000)) < 1e-9 and round(s * 1000) % 1000 == 0:
        return f"{s:g}s"
    ms = s * 1000
    return f"{ms:.6g}ms" if ms >= 0.001 else f"{s * 1e6:.3g}us"


def format_percent(x: float) -> str:
    return f"{x * 100:.6g}%"


def format_rate(bps: float) -> str:
    for unit, f in (("gbit", 1e9), ("mbit", 1e6), ("kbit", 1e3)):
        if bps >= f:
            return f"{bps / f:.6g}{unit}"
    return f"{bps:g}bit"
