"""A sweep: one scenario run over a grid of link impairments, to find where calls break.

``icelab sweep SCENARIO --param link.delay=0..400ms/9 --param link.loss=0..20%`` runs the
scenario once per grid point. Each run is the scenario as written, plus one ``link`` step at
0 s that sets the swept settings on the swept link, over whatever the link has (so a
scenario that sets ``loss: 5%`` and a sweep of ``link.delay`` keep the 5 %). Of each run the
sweep keeps what the softphone saw: outcome, error, first relay candidate, set-up time,
audio loss, jitter and round trip, and the scenario's own verdict.

Parameters (``FIELD`` is a link setting of docs/impairments.md: delay, jitter, loss, rate)::

    link.delay=0..400ms        5 points, 0 to 400 ms (the unit of the end applies to both)
    link.delay=0..400ms/9      9 points
    link.loss=0%,2%,5%,20%     these values

The swept link, first found of: ``--link A-B``; the scenario's ``sweep: {a:, b:}``; the
link of the scenario's first ``link`` step. At most two parameters: a plot has two axes.
"""

from __future__ import annotations

import dataclasses
import re
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from lab.core.errors import InputError, Problem, did_you_mean
from lab.core.units import (format_percent, format_rate, format_time, percent_setting, rate_setting,
                            time_setting)
from lab.model.impairment import MAX_DELAY

from .load import Scenario, Step
from .schema import LinkChange

Progress = Callable[[str], None]

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


# -- which link, which call -----------------------------------------------------------------


def choose_link(scenario: Scenario, link: str | None) -> tuple[str, str]:
    """The swept link's two ends (see the module's docstring for the order)."""
    topo = scenario.topology
    joined = {frozenset((l.a.node, l.b.node)) for l in topo.links}
    if link:
        # node names contain '-' too: try every split of A-B
        parts = link.split("-")
        for i in range(1, len(parts)):
            a, b = "-".join(parts[:i]), "-".join(parts[i:])
            if frozenset((a, b)) in joined:
                return a, b
        names = sorted(f"{l.a.node}-{l.b.node}" for l in topo.links)
        raise InputError([Problem("--link", link, f"no link of '{topo.name}' joins the two nodes named",
                                  did_you_mean(link, names, "links"))])
    spec = scenario.sweep or {}
    if spec.get("a") and spec.get("b"):
        return spec["a"], spec["b"]
    step = next((s for s in scenario.steps if s.action == "link"), None)
    if step is not None:
        return step.spec.a, step.spec.b
    raise InputError([Problem(scenario.file, "sweep", "which link to sweep is not said",
                              "give --link A-B (e.g. --link edge-isp), or 'sweep: {a: edge, b: isp}' in the scenario")])


def choose_call(scenario: Scenario, name: str | None) -> str:
    calls = [s.name for s in scenario.steps if s.action == "call"]
    if name:
        if name not in calls:
            raise InputError([Problem("--call", name, "no call of that name in the scenario",
                                      did_you_mean(name, calls, "calls") or "the scenario places no call")])
        return name
    if (scenario.sweep or {}).get("call"):
        return scenario.sweep["call"]
    if not calls:
        raise InputError([Problem(scenario.file, "timeline", "the scenario places no call, so there is nothing to time",
                                  "sweep a scenario with a 'call' step")])
    return calls[0]


# -- running ------------------------------------------------------------------------------


@dataclass
class Point:
    """What one run of the grid showed."""

    values: dict[str, float]                 # field -> value (s, fraction, bit/s)
    labels: dict[str, str]                   # field -> as written: 100ms, 5%
    verdict: str = "error"                   # the scenario's own verdict
    outcome: str = "error"                   # talking, silent, failed, error (the run broke)
    error: str | None = None                 # the softphone's error type, or why the run broke
    first_candidate: float | None = None     # s after the ICE state began
    setup: float | None = None               # s from the call's start to Talking
    audio_start: float | None = None         # s from Talking to media flowing (ICE checks and DTLS done)
    error_at: float | None = None            # s after the ICE state began
    loss: float | None = None                # audio loss, the worse direction (fraction)
    jitter: float | None = None              # s
    rtt: float | None = None                 # s
    wall: float = 0.0                        # s this run took

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass
class Sweep:
    scenario: str
    file: str
    link: tuple[str, str]
    direction: str
    call: str
    params: list[Param]
    points: list[Point] = field(default_factory=list)
    wall: float = 0.0
    date: str = ""

    def to_dict(self) -> dict:
        return {"scenario": self.scenario, "file": self.file, "link": list(self.link), "direction": self.direction,
                "call": self.call, "date": self.date, "wall_s": round(self.wall, 2),
                "params": [{"field": p.field, "text": p.text, "values": list(p.values),
                            "labels": [p.label(v) for v in p.values]} for p in self.params],
                "points": [p.to_dict() for p in self.points]}


def grid(params: list[Param]) -> list[dict[str, float]]:
    """Every combination, the first parameter varying slowest."""
    out: list[dict[str, float]] = [{}]
    for p in params:
        out = [dict(g, **{p.field: v}) for g in out for v in p.values]
    return out


def point_scenario(scenario: Scenario, link: tuple[str, str], direction: str, settings: dict[str, str]) -> Scenario:
    """The scenario with the swept settings applied at 0 s, after its own link steps at 0 s
    (so the sweep's values win for the swept fields); captures off: a sweep times calls."""
    spec = LinkChange.model_validate({"a": link[0], "b": link[1], "direction": direction, **settings})
    step = Step(0.0, "link", spec, ("sweep",), None, f"{link[0]}-{link[1]}")
    steps = list(scenario.steps)
    at = next((i for i, s in enumerate(steps) if not (s.at == 0 and s.action == "link")), len(steps))
    steps.insert(at, step)
    return dataclasses.replace(scenario, steps=steps, capture="none")


def observe(point: Point, result: Any, call: str) -> Point:
    """Fill a point from a scenario run's Result."""
    from .expect import audio_loss
    point.verdict = result.verdict
    obs = result.observations.get(f"call:{call}")
    if result.error or obs is None or "error" in obs:
        point.outcome = "error"
        point.error = result.error or (obs or {}).get("error") or "the call produced nothing"
        return point
    q = obs.get("quality") or {}
    times = obs.get("times") or {}
    if obs.get("reached_talking"):
        point.outcome = "silent" if q.get("silent_audio") else "talking"
    else:
        point.outcome = "failed"
        point.error = obs.get("softphone_error") or obs.get("rtc_error") or "failed"
    point.first_candidate = times.get("first_candidate")
    point.error_at = times.get("error")
    if times.get("talking") is not None:
        start = (obs.get("timeline") or [{}])[0].get("t", 0.0)
        point.setup = times["talking"] - start
        dtls = next((e["t"] for e in obs.get("timeline") or []
                     if e.get("kind") == "media" and e.get("name") == "dtls_connected"), None)
        if dtls is not None:
            point.audio_start = dtls - times["talking"]
    # a silent call's few packets say nothing about the path's loss
    point.loss = audio_loss(q) if point.outcome == "talking" else None
    point.jitter = None if q.get("jitter_ms") is None else q["jitter_ms"] / 1000
    point.rtt = None if q.get("rtt_ms") is None else q["rtt_ms"] / 1000
    return point


def run_sweep(scenario: Scenario, params: list[Param], link: tuple[str, str], call: str,
              direction: str = "both", progress: Progress = lambda m: None,
              on_point: Callable[[Point], None] = lambda p: None) -> Sweep:
    """Run every grid point, one after the other (each builds and tears down its lab)."""
    from .runner import run_scenario
    sweep = Sweep(scenario.name, scenario.file, link, direction, call, params,
                  date=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()))
    t0 = time.monotonic()
    by_field = {p.field: p for p in params}
    points = grid(params)
    for i, values in enumerate(points, 1):
        labels = {f: by_field[f].label(v) for f, v in values.items()}
        where = ", ".join(f"{f}={labels[f]}" for f in values)
        progress(f"[{i}/{len(points)}] {where}")
        s = point_scenario(scenario, link, direction, labels)
        started = time.monotonic()
        result = run_scenario(s, progress=lambda m, where=where: progress(f"[{i}/{len(points)}] {where}: {m}"))
        point = observe(Point(values, labels), result, call)
        point.wall = time.monotonic() - started
        sweep.points.append(point)
        on_point(point)
    sweep.wall = time.monotonic() - t0
    return sweep
