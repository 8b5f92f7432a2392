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

Sharded (``--shard K/N``, for CI fan-out as `verify --shard`): shard K runs the grid points
K, K+N, K+2N, ... (counting from 1, in grid order). Interleaved rather than in blocks because
a grid point's duration grows with its delay and loss, so neighbouring points cost about the
same: every shard gets its share of the slow end. The split depends on the grid alone (no
durations: a sweep's grid is new each time), so every machine computes the same one, and
`merge_sweeps` puts the shards' points back into grid order.

One lab per worker, not per point, where that gives the same runs (``reusable``): a point
changes only link settings, which the lab's impairment backend changes live, so a worker builds
its lab once, and before each point puts every link back to what the build set and starts the
point's softphone; building and tearing down a lab (its services' Python start-up most of it)
was a third of a short point's time and most of its CPU (docs/benchmarks.md, "Sweeps in
parallel"). Not reusable, each point builds its own lab as `icelab run` does.
"""

from __future__ import annotations

import contextlib
import dataclasses
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from lab.core.errors import InputError, LabError, Problem, UsageError, did_you_mean
from lab.model.impairment import Impairment
from lab.net import Network, shaping

from .actions.link import LinkChange
from .load import Scenario, Step
from .observations import CallObservation
from .params import DEFAULT_POINTS, FIELDS, MAX_POINTS, PARAM_HINT, Param, parse_param, parse_params
from .runner import Runner, run_scenario

__all__ = ["DEFAULT_POINTS", "FIELDS", "MAX_POINTS", "PARAM_HINT", "Param", "Point", "Sweep", "choose_call",
           "choose_link", "grid", "merge_sweeps", "observe", "parse_param", "parse_params", "point_scenario",
           "run_sweep", "shard_indices"]

Progress = Callable[[str], None]


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

    @classmethod
    def from_dict(cls, d: dict) -> "Point":
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


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
    shard: tuple[int, int] | None = None     # (K, N) of a sharded run; its points are shard_indices' ones

    def to_dict(self) -> dict:
        d = {"scenario": self.scenario, "file": self.file, "link": list(self.link), "direction": self.direction,
             "call": self.call, "date": self.date, "wall_s": round(self.wall, 2),
             "params": [{"field": p.field, "text": p.text, "values": list(p.values),
                         "labels": [p.label(v) for v in p.values]} for p in self.params],
             "points": [p.to_dict() for p in self.points]}
        if self.shard:
            k, n = self.shard
            d["shard"] = {"k": k, "n": n, "indices": shard_indices(len(grid(self.params)), k, n)}
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "Sweep":
        """A sweep from its sweep.json (the parameters parsed again from their text)."""
        params = parse_params([p["text"] for p in d["params"]])
        shard = (d["shard"]["k"], d["shard"]["n"]) if d.get("shard") else None
        return cls(d["scenario"], d["file"], tuple(d["link"]), d["direction"], d["call"], params,
                   [Point.from_dict(p) for p in d["points"]], d.get("wall_s", 0.0), d.get("date", ""), shard)


def shard_indices(count: int, k: int, n: int) -> list[int]:
    """The grid indices (from 0) shard ``k`` of ``n`` runs: every n-th point from the k-th."""
    return list(range(k - 1, count, n))


def merge_sweeps(parts: list[tuple[str, Sweep]]) -> Sweep:
    """The shards of one sweep (each with where it came from, for the messages) as the sweep
    an unsharded run makes: every grid point once, in grid order. Shards of different sweeps,
    a shard given twice or a missing shard are errors, not a partial picture."""
    if not parts:
        raise UsageError("no sweep shards to merge\n    hint: give the folders `icelab sweep --shard K/N -o FOLDER` wrote")
    where0, first = parts[0]

    def key(s: Sweep) -> tuple:
        return (s.scenario, s.link, s.direction, s.call, [(p.field, p.values) for p in s.params])

    n = first.shard[1] if first.shard else 1
    seen: dict[int, str] = {}
    for where, s in parts:
        if key(s) != key(first):
            raise UsageError(f"{where} is a sweep of {s.scenario} over {', '.join(p.text for p in s.params)}, "
                             f"{where0} of {first.scenario} over {', '.join(p.text for p in first.params)}\n"
                             "    hint: merge the shards of one sweep at a time (same scenario, link, call and "
                             "--param)")
        if not s.shard or s.shard[1] != n:
            raise UsageError(f"{where} is {'not a shard' if not s.shard else f'shard {s.shard[0]}/{s.shard[1]}'}, "
                             f"{where0} one of {n}\n    hint: give the N folders of one `icelab sweep --shard K/N` "
                             "run, K = 1..N")
        k = s.shard[0]
        if k in seen:
            raise UsageError(f"shard {k}/{n} is in both {seen[k]} and {where}\n"
                             "    hint: were two shards run with the same K, or one folder given twice?")
        seen[k] = where
    missing = sorted(set(range(1, n + 1)) - set(seen))
    if missing:
        raise UsageError(f"shard{'s' if len(missing) > 1 else ''} {', '.join(f'{k}/{n}' for k in missing)} "
                         f"of the sweep of {first.scenario} missing\n"
                         "    hint: give every shard's folder; a shard that failed must be run again")
    count = len(grid(first.params))
    by_index: dict[int, Point] = {}
    for where, s in parts:
        idx = shard_indices(count, s.shard[0], n)
        if len(idx) != len(s.points):
            raise UsageError(f"{where}: shard {s.shard[0]}/{n} holds {len(s.points)} points, its part of the grid "
                             f"is {len(idx)}\n    hint: the shard was stopped before it finished: run it again")
        by_index.update(zip(idx, s.points))
    return Sweep(first.scenario, first.file, first.link, first.direction, first.call, first.params,
                 [by_index[i] for i in range(count)],
                 # the shards ran side by side: the sweep took as long as the longest of them
                 wall=max(s.wall for _, s in parts), date=min(s.date for _, s in parts))


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
    point.verdict = result.verdict
    record = result.observations.get(f"call:{call}")
    if result.error or record is None or "error" in record:
        point.outcome = "error"
        point.error = result.error or (record or {}).get("error") or "the call produced nothing"
        return point
    obs = CallObservation.from_dict(record)
    q, times = obs.quality, obs.times
    if obs.reached_talking:
        point.outcome = "silent" if q.silent_audio else "talking"
    else:
        point.outcome = "failed"
        point.error = obs.softphone_error or obs.rtc_error or "failed"
    point.first_candidate = times.first_candidate
    point.error_at = times.error
    if times.talking is not None:
        point.setup = times.talking - obs.start
        dtls = next((e["t"] for e in obs.timeline if e.get("kind") == "media" and e.get("name") == "dtls_connected"),
                    None)
        if dtls is not None:
            point.audio_start = dtls - times.talking
    # a silent call's few packets say nothing about the path's loss
    point.loss = q.loss if point.outcome == "talking" else None
    point.jitter = None if q.jitter_ms is None else q.jitter_ms / 1000
    point.rtt = None if q.rtt_ms is None else q.rtt_ms / 1000
    return point


# what a point may do and still share its lab with the next: place calls and change links;
# in a lab of hosts (with these services), LANs and plain routers
REUSABLE_ACTIONS = {"call", "link"}
REUSABLE_SERVICES = {"turn", "signalling", "media"}


def reusable(scenario: Scenario) -> str | None:
    """Why consecutive points cannot share one lab, or None if they can. State a run leaves
    behind must not change the next run's result, so a point may only place calls and change
    links (links are put back before the next point, each call is answered anew and its far
    end read from its own log lines), in a lab that keeps no other state a call could meet: no
    firewall or NAT (counters, connection tables, a port pool), no VPN (a TCP tunnel's
    back-off after a lossy point), no VDI desktop. Captures are off in a sweep anyway."""
    other = sorted({s.action for s in scenario.steps} - REUSABLE_ACTIONS)
    if other:
        return f"its timeline has {', '.join(other)} steps"
    if any(e.kind != "call" for e in scenario.expectations):
        return "it expects more than calls"
    for n in scenario.topology.nodes.values():
        if n.kind not in ("host", "lan", "router") or n.vpn or n.vdi or n.tunnels or n.policy is not None:
            return f"its node {n.name} ({n.kind}{', vpn' if n.vpn else ''}{', vdi' if n.vdi else ''}) " \
                   "keeps state between calls"
        extra = sorted(set(n.services) - REUSABLE_SERVICES)
        if extra:
            return f"{n.name} runs {', '.join(extra)}"
    return None


def _restore_links(lab: Network, built: dict) -> None:
    """Every link's impairments back to those the build set (``built``: shaping.current)."""
    st = lab.state
    now = shaping.current(st)
    for link in st.topology["links"]:
        i = link["index"]
        for d in ("a2b", "b2a"):
            want = built.get(i, {}).get(d, Impairment())
            if now.get(i, {}).get(d, Impairment()) != want:
                shaping.set_impairment(lab, link["a"]["node"], link["b"]["node"], want, d)


def run_sweep(scenario: Scenario, params: list[Param], link: tuple[str, str], call: str,
              direction: str = "both", progress: Progress = lambda m: None,
              on_point: Callable[[Point], None] = lambda p: None, parallel: int = 1,
              shard: tuple[int, int] | None = None, fresh_labs: bool = False) -> Sweep:
    """Run every grid point (each builds and tears down its lab), or with ``shard`` (K, N)
    shard K's points: one after the other, or ``parallel`` at a time, each worker in a lab
    named after its slot (and shard) so that labs of the same topology run side by side, on
    one machine too; a worker keeps its lab from point to point when ``reusable`` (and not
    ``fresh_labs``). Workers take the next point as they get free. Points are kept in grid
    order either way."""
    sweep = Sweep(scenario.name, scenario.file, link, direction, call, params,
                  date=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), shard=shard)
    t0 = time.monotonic()
    by_field = {p.field: p for p in params}
    points = grid(params)
    if shard:
        points = [points[i] for i in shard_indices(len(points), *shard)]
    why_not = "--fresh-labs" if fresh_labs else reusable(scenario)
    if why_not:
        progress(f"one lab per point: {why_not}")
    todo = list(enumerate(points, 1))
    results: dict[int, Point] = {}
    lock = threading.Lock()
    stop = threading.Event()
    failures: list[BaseException] = []

    def lab_name(slot: int) -> str | None:
        worker = f"w{slot}" if parallel > 1 else ""
        suffix = f"-s{shard[0]}{worker}" if shard else f"-{worker}" if worker else ""
        return scenario.topology.name[:15 - len(suffix)] + suffix if suffix else None

    def one(i: int, values: dict, name: str | None, lab: Network | None) -> tuple[Point, bool]:
        """The point, and whether its run broke (an error, not a verdict)."""
        labels = {f: by_field[f].label(v) for f, v in values.items()}
        where = ", ".join(f"{f}={labels[f]}" for f in values)
        progress(f"[{i}/{len(points)}] {where}")
        s = point_scenario(scenario, link, direction, labels)
        if name:
            s = dataclasses.replace(s, topology=s.topology.renamed(name))
        started = time.monotonic()
        result = run_scenario(s, progress=lambda m: progress(f"[{i}/{len(points)}] {where}: {m}"), lab=lab)
        point = observe(Point(values, labels), result, call)
        point.wall = time.monotonic() - started
        on_point(point)
        return point, bool(result.error)

    def worker(slot: int) -> None:
        name = lab_name(slot)
        lab_cm: contextlib.ExitStack | None = None
        lab = built = None
        try:
            while not stop.is_set():
                with lock:
                    if not todo:
                        return
                    i, values = todo.pop(0)
                if lab is not None:
                    try:
                        _restore_links(lab, built)
                    except (RuntimeError, LabError):
                        lab_cm.close()          # a lab whose links cannot be put back is built anew
                        lab_cm = lab = None
                if why_not is None and lab is None:
                    topo = Runner(scenario).planned_topology()
                    lab_cm = contextlib.ExitStack()
                    try:
                        lab = lab_cm.enter_context(Network(topo.renamed(name) if name else topo))
                        built = shaping.current(lab.state)
                    except (RuntimeError, LabError):
                        # the point builds its own lab, as without reuse, and its result says why that failed
                        lab_cm.close()
                        lab_cm = lab = None
                results[i], broke = one(i, values, name, lab)
                if broke and lab_cm is not None:
                    # a run that broke may have left the lab broken: the next point builds anew
                    lab_cm.close()
                    lab_cm = lab = None
        except BaseException as exc:         # noqa: BLE001 -- handed to the calling thread
            failures.append(exc)
            stop.set()
        finally:
            if lab_cm is not None:
                lab_cm.close()

    threads = [threading.Thread(target=worker, args=(slot,), name=f"sweep-w{slot}", daemon=True)
               for slot in range(max(1, parallel))]
    for t in threads:
        t.start()
    try:
        for t in threads:
            while t.is_alive():
                t.join(0.2)
    except BaseException:
        # stopped (a signal): no new point starts; each worker finishes its point and tears its lab down
        stop.set()
        for t in threads:
            t.join()
        raise
    if failures:
        raise failures[0]
    sweep.points = [results[i] for i in range(1, len(points) + 1)]
    sweep.wall = time.monotonic() - t0
    return sweep
