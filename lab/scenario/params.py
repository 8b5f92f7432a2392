"""A sweep's parameters: ``link.FIELD=START..END[/POINTS]`` or ``link.FIELD=V1,V2,...``,
read with the lab's one reader of durations, percentages and rates (lab/core/units.py).
Checked at load (a scenario's ``sweep: params``) and on the command line (``--param``)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from lab.core.errors import InputError, Problem, did_you_mean
from lab.core.units import (format_percent, format_rate, format_time, percent_setting, rate_setting,
                            time_setting)
from lab.model.impairment import MAX_DELAY

DEFAULT_POINTS = 5
MAX_POINTS = 400            # per sweep: at several seconds a run, more is a mistake
FIELDS = {"delay": "time", "jitter": "time", "loss": "percent", "rate": "rate"}
_PARAM = re.compile(r"^\s*link\.(?P<field>[a-z_]+)\s*=\s*(?P<values>.+?)\s*$")
_UNIT = re.compile(r"^[\d.\s]+(?P<unit>[a-zµ%]+)$", re.IGNORECASE)
PARAM_HINT = "write link.FIELD=START..END[/POINTS] or link.FIELD=V1,V2,...: link.delay=0..400ms/9, link.loss=0%,5%,20%"


@dataclass(frozen=True)
class Param:
    """One swept link setting and its values (seconds, fractions or bit/s)."""

    field: str
    values: tuple[float, ...]
    text: str

    def label(self, value: float) -> str:
        kind = FIELDS[self.field]
        return format_time(value) if kind == "time" else format_percent(value) if kind == "percent" else format_rate(value)

    @property
    def unit(self) -> str:
        return {"time": "ms", "percent": "%", "rate": "kbit/s"}[FIELDS[self.field]]

    def scaled(self, value: float) -> float:
        """The value in the unit plots show: ms, % or kbit/s."""
        return value * {"time": 1000, "percent": 100, "rate": 0.001}[FIELDS[self.field]]


def _value(kind: str, text: str, issues: list) -> float | None:
    if re.fullmatch(r"\s*[\d.]+\s*", text):
        example = {"time": "ms", "percent": "%", "rate": "kbit"}[kind]
        issues.append(((), f"'{text}' has no unit", f"write {text.strip()}{example}: a bare number could mean anything"))
        return None
    parse = {"time": lambda v, i: time_setting(v, (), i, "value", longest=MAX_DELAY),
             "percent": lambda v, i: percent_setting(v, (), i, "value"),
             "rate": lambda v, i: rate_setting(v, (), i)}[kind]
    return parse(text, issues)


def parse_param(text: str) -> Param:
    """``link.delay=0..400ms/9`` -> Param; InputError naming the parameter and a hint."""

    def bad(message: str, hint: str | None = PARAM_HINT) -> InputError:
        return InputError([Problem("--param", text, message, hint)])

    m = _PARAM.match(text)
    if not m:
        if "=" not in text:
            raise bad("a parameter needs '=' and its values")
        if not text.strip().startswith("link."):
            raise bad(f"'{text.split('=')[0].strip()}' cannot be swept: only link settings can",
                      "sweep link.delay, link.jitter, link.loss or link.rate")
        raise bad("not a parameter")
    fld, values = m.group("field"), m.group("values")
    if fld not in FIELDS:
        raise bad(f"'{fld}' is not a link setting that can be swept", did_you_mean(fld, FIELDS, "sweepable settings"))
    kind = FIELDS[fld]
    issues: list = []
    if ".." in values:
        start, _, rest = values.partition("..")
        end, slash, n = rest.partition("/")
        start, end, n = start.strip(), end.strip(), (n.strip() if slash else None)
        if re.fullmatch(r"[\d.\s]+", end):
            example = {"time": "ms", "percent": "%", "rate": "kbit"}[kind]
            raise bad(f"the range '{values}' has no unit", f"write {start}..{end}{example}: the unit of the end applies to both")
        unit = _UNIT.match(end)
        if unit and re.fullmatch(r"[\d.\s]+", start):
            start = start + unit.group("unit")      # 0..400ms: the end's unit for both
        lo, hi = _value(kind, start, issues), _value(kind, end, issues)
        if issues:
            raise bad(issues[0][1], issues[0][2])
        if hi <= lo:
            raise bad(f"the range goes backwards or nowhere ({start} to {end})", "write START..END with START < END")
        points = DEFAULT_POINTS
        if n is not None:
            if not n.isdigit() or int(n) < 2:
                raise bad(f"'/{n}' is not a number of points", "give at least 2 points, e.g. 0..400ms/9")
            points = int(n)
        step = (hi - lo) / (points - 1)
        vals = tuple(round(lo + i * step, 12) for i in range(points))
    else:
        vals = []
        for item in values.split(","):
            v = _value(kind, item.strip(), issues)
            if issues:
                raise bad(issues[0][1], issues[0][2])
            vals.append(v)
        if len(set(vals)) != len(vals):
            raise bad("a value is given twice", "each value once")
        vals = tuple(vals)
    return Param(fld, vals, text.strip())


def parse_params(texts: list[str]) -> list[Param]:
    problems: list[Problem] = []
    params: list[Param] = []
    for t in texts:
        try:
            params.append(parse_param(t))
        except InputError as exc:
            problems += exc.problems
    fields = [p.field for p in params]
    for f in {f for f in fields if fields.count(f) > 1}:
        problems.append(Problem("--param", f"link.{f}", "swept twice", "give each setting once"))
    if len(texts) > 2:
        problems.append(Problem("--param", "", f"{len(texts)} parameters; a sweep has at most two",
                                "a plot has two axes: sweep two settings, and fix the others in the scenario"))
    if not texts:
        problems.append(Problem("--param", "", "nothing to sweep",
                                "give --param link.delay=0..400ms (or 'params:' in the scenario's sweep: section)"))
    n = 1
    for p in params:
        n *= len(p.values)
    if n > MAX_POINTS:
        problems.append(Problem("--param", "", f"{n} grid points; at most {MAX_POINTS}",
                                "fewer points per parameter, e.g. /9"))
    if problems:
        raise InputError(problems)
    return params
