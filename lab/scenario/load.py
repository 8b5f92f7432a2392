"""From a scenario file to a checked Scenario, with every problem reported at once.

The topology a scenario runs on is its topology file with the scenario's ``overrides``
merged in (JSON merge patch: mappings merge key by key, ``null`` removes a key, anything
else replaces; ``links+`` appends links). The merged document is checked like any topology,
and a problem in a value the scenario put there is reported at the scenario's own line
(``topology.overrides.nodes.edge.kind``), one in the topology file's values at that file's.
"""

from __future__ import annotations

import copy
import os
import re
from dataclasses import dataclass, field
from ipaddress import IPv4Address, ip_address
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from lab.core.errors import InputError, Problem, did_you_mean, format_path
from lab.core.units import Bound, parse_bound, parse_duration, parse_percent_bound
from lab.model.loader import Located, load_yaml
from lab.model.schema import _kind_of, _translate
from lab.model.topology import Topology
from lab.model.validate import resolve

from . import schema as S
from .actions import ACTIONS, EXPECTS
from .actions.call import SOFTPHONE_ERRORS
from .actions.link import joins
from .params import parse_param

Path_ = tuple


class Overlay(Located):
    """A topology document with a scenario's overrides merged in: problems in values the
    scenario set point at the scenario file."""

    def __init__(self, base: Located, scenario: Located, at: Path_, overrides: dict):
        data = copy.deepcopy(base.data) if isinstance(base.data, dict) else {}
        self.set_paths: set[Path_] = set()
        self.scenario = scenario
        self.at = at
        _merge(data, overrides, (), self.set_paths)
        super().__init__(base.file, data, base.lines)

    def _from_scenario(self, path: Path_) -> Path_ | None:
        path = tuple(path)
        for n in range(len(path), 0, -1):
            if path[:n] in self.set_paths:
                return path
        return None

    def problem(self, path: Path_, message: str, hint: str | None = None) -> Problem:
        rel = self._from_scenario(path)
        if rel is None:
            return super().problem(path, message, hint)
        spath = self.at + _scenario_path(rel, self.set_paths)
        return Problem(self.scenario.file, format_path(spath), message, hint, self.scenario.line(spath))


def _scenario_path(rel: Path_, set_paths: set[Path_]) -> Path_:
    # appended links are written under 'links+' in the scenario, at their own index there
    if rel and rel[0] == "links" and len(rel) > 1 and ("links+", rel[1]) in set_paths:
        return ("links+", set_paths_index(set_paths, rel[1])) + rel[2:]
    return rel


def set_paths_index(set_paths: set[Path_], link_index: int) -> int:
    appended = sorted(p[1] for p in set_paths if p[0] == "links+" and len(p) == 2)
    return appended.index(link_index)


def _merge(target: dict, patch: dict, at: Path_, set_paths: set[Path_]) -> None:
    for key, value in patch.items():
        if key == "links+" and at == ():
            links = target.setdefault("links", [])
            if isinstance(value, list) and isinstance(links, list):
                for item in value:
                    set_paths.add(("links", len(links)))
                    set_paths.add(("links+", len(links)))
                    links.append(copy.deepcopy(item))
            continue
        if value is None:
            target.pop(key, None)
        elif isinstance(value, dict) and isinstance(target.get(key), dict):
            _merge(target[key], value, at + (key,), set_paths)
        else:
            target[key] = copy.deepcopy(value)
            set_paths.add(at + (key,))


# -- the resolved scenario -------------------------------------------------------------


@dataclass
class Step:
    at: float
    action: str                  # probe, call, ... (lab/scenario/actions/)
    spec: BaseModel              # once checked, the action's typed form (times in seconds)
    path: Path_
    line: int | None
    name: str | None = None      # what expectations call it
    before: int | None = None    # rule steps: the number of the rule an added rule goes before


@dataclass
class Expectation:
    kind: str                    # probe, call
    spec: BaseModel
    path: Path_
    line: int | None
    bounds: dict[str, Bound] = field(default_factory=dict)

    @property
    def target(self) -> str:
        return getattr(self.spec, self.kind)

    @property
    def title(self) -> str:
        if self.spec.name:
            return self.spec.name
        checks = [k for k in self.spec.model_fields_set if k not in ("name", "pass_", "fail", self.kind)]
        return f"{self.kind} {self.target}: " + ", ".join(sorted(checks))


@dataclass
class Scenario:
    name: str
    file: str
    title: str | None
    description: str | None
    claim: str | None
    pair: str | None
    variant: str | None
    topology: Topology
    steps: list[Step]
    expectations: list[Expectation]
    duration: float | None
    capture: str = "auto"
    sweep: dict | None = None        # defaults for `icelab sweep` (sweep.py)

    def step(self, action: str, name: str) -> Step | None:
        return next((s for s in self.steps if s.action == action and s.name == name), None)


#: the hint an empty scenario file gets
SCENARIO_SHAPE = "a scenario is a mapping with name, topology, timeline and expect"


def load_scenario(path: str | Path, lab_name: str | None = None, turn_backend: str | None = None) -> Scenario:
    """Read and check a scenario and its topology; raise InputError with every problem.
    ``turn_backend`` (embedded, coturn) overrides the TURN backend of the scenario's topology
    and its own overrides (``icelab verify --turn-backend``): a whole set against one backend."""
    doc = load_yaml(path, shape=SCENARIO_SHAPE)
    return _Checker(doc, lab_name, turn_backend).run()


TURN_BACKENDS = ("embedded", "coturn")


class _Checker:
    def __init__(self, doc: Located, lab_name: str | None, turn_backend: str | None = None):
        self.doc = doc
        self.lab_name = lab_name
        self.turn_backend = turn_backend
        self.problems: list[Problem] = []
        self._state: dict[str, dict] = {}
        self.topo: Topology | None = None

    def err(self, path: Path_, message: str, hint: str | None = None) -> None:
        self.problems.append(self.doc.problem(path, message, hint))

    def state(self, action: str) -> dict:
        """What an action's checks keep along the timeline (a TURN server stopped, the rules
        a firewall has then), checked in time order."""
        return self._state.setdefault(action, {})

    def run(self) -> Scenario:
        doc = self.doc
        if not isinstance(doc.data, dict):
            raise InputError([doc.problem((), f"a scenario must be a mapping, not {_kind_of(doc.data)}",
                                          "start with 'name:', 'topology:', 'timeline:' and 'expect:'")])
        top = self._top(doc.data)
        if not _word(top.name):
            self.err(("name",), f"scenario name '{top.name}' has characters that cannot be used",
                     "use lowercase letters, digits and '-', starting with a letter")
        topo = self._topology(top)
        duration = None
        if top.duration is not None:
            duration, m, h = parse_duration(top.duration, allow_zero=False)
            if m:
                self.err(("duration",), m, h)
        before = len(self.problems)
        steps = self._timeline(top.timeline, topo)
        # a step that is broken (or a topology that is) was reported already: expectations
        # naming it would only repeat that
        self.steps_whole = topo is not None and len(self.problems) == before
        self.topo = topo
        expects = self._expectations(top.expect, steps)
        if top.sweep is not None and topo is not None:
            self._sweep(top.sweep, topo, steps)
        if self.problems:
            self.problems.sort(key=lambda p: (p.file != doc.file, p.file, p.line or 0))
            raise InputError(self.problems)
        return Scenario(top.name, doc.file, top.title, top.description, top.claim, top.pair, top.variant,
                        topo, sorted(steps, key=lambda s: s.at), expects, duration, top.capture,
                        top.sweep.model_dump() if top.sweep else None)

    def _top(self, data: dict) -> S.Scenario:
        """The top level; a field that is wrong is reported and left out, so that the
        rest of the file is still checked (stops only when a required field is unusable)."""
        try:
            return S.Scenario.model_validate(data)
        except ValidationError as exc:
            errors = exc.errors()
        self.problems += [_translate(e, self.doc, (), S.Scenario, tuple(e["loc"])) for e in errors]
        bad = {e["loc"][0] for e in errors if e["loc"]}
        if bad & {"name", "topology"} or any(not e["loc"] for e in errors):
            raise InputError(self.problems)
        try:
            return S.Scenario.model_validate({k: v for k, v in data.items() if k not in bad})
        except ValidationError:
            raise InputError(self.problems)

    # -- topology ----------------------------------------------------------------------

    def _topology(self, top: S.Scenario) -> Topology | None:
        ref = top.topology if isinstance(top.topology, S.TopologyRef) else S.TopologyRef(file=top.topology)
        at = ("topology", "file") if isinstance(top.topology, S.TopologyRef) else ("topology",)
        file = Path(self.doc.file).parent / ref.file
        if file.is_dir():
            self.err(at, f"topology '{ref.file}' is a folder, not a file (found {os.path.normpath(file)})",
                     "name a topology file in it, e.g. ../topologies/agent-lan.yaml")
            return None
        if not file.is_file():
            self.err(at, f"topology file '{ref.file}' not found (looked for {os.path.normpath(file)})",
                     "the path is relative to the scenario file, e.g. ../topologies/agent-lan.yaml")
            return None
        try:
            base = load_yaml(file)
        except InputError as exc:
            self.problems += exc.problems
            return None
        overrides = ref.overrides
        if self.turn_backend:
            overrides = copy.deepcopy(overrides)
            services = overrides.setdefault("services", {})
            if isinstance(services, dict):
                turn = services.get("turn")
                services["turn"] = dict(turn if isinstance(turn, dict) else {}, backend=self.turn_backend)
        merged = Overlay(base, self.doc, ("topology", "overrides"), overrides) if overrides else base
        try:
            return resolve(merged, self.lab_name or top.lab)
        except InputError as exc:
            self.problems += exc.problems
            return None

    # -- timeline ----------------------------------------------------------------------

    def _timeline(self, items: list[Any], topo: Topology | None) -> list[Step]:
        steps: list[Step] = []
        names: dict[tuple[str, str], Path_] = {}
        parsed: list[Step] = []
        for i, raw in enumerate(items):
            path = ("timeline", i)
            if not isinstance(raw, dict):
                self.err(path, f"a timeline step must be a mapping, not {_kind_of(raw)}",
                         "write '- {at: 0s, probe: {...}}'")
                continue
            actions = [k for k in raw if k != "at"]
            if "at" not in raw:
                self.err(path, "the step has no 'at'", "say when it happens: 'at: 0s'")
            if len(actions) != 1 or actions[0] not in S.ACTION_MODELS:
                unknown = [a for a in actions if a not in S.ACTION_MODELS]
                if unknown:
                    self.err(path + (unknown[0],), f"unknown action '{unknown[0]}'",
                             did_you_mean(unknown[0], S.ACTION_MODELS, "actions"))
                elif not actions:
                    self.err(path, "the step has no action", "actions: " + ", ".join(S.ACTION_MODELS))
                else:
                    self.err(path, f"one action per step, not {len(actions)} ({', '.join(actions)})",
                             "split them into steps with the same 'at'")
                continue
            action = actions[0]
            if "at" not in raw:
                continue
            at, m, h = parse_duration(raw["at"])
            if m:
                self.err(path + ("at",), m, h)
                continue
            if action in S.PENDING_ACTIONS:
                self.err(path + (action,), f"action '{action}' is not available yet (it arrives with issue "
                         f"#{S.PENDING_ACTIONS[action]})", "leave it out for now")
                continue
            model = S.ACTION_MODELS[action]
            spec_raw = raw[action]
            try:
                spec = model.model_validate(spec_raw)
            except ValidationError as exc:
                self.problems += [_translate(e, self.doc, path + (action,), model, tuple(e["loc"]))
                                  for e in exc.errors()]
                continue
            parsed.append(Step(at, action, spec, path + (action,), self.doc.line(path)))
        # meaning in time order: what a TURN or rule step may do depends on the steps before it
        for step in sorted(parsed, key=lambda st: st.at):
            path, action = step.path[:-1], step.action
            if topo is not None and not self._check_step(step, topo):
                continue
            key = (action, step.name)
            if step.name and key in names and ACTIONS[action].named:
                self.err(path + (action, "name"), f"a {action} named '{step.name}' is already at "
                         f"{format_path(names[key])}", "give each a name of its own with 'name:'")
                continue
            names[key] = path
            steps.append(step)
        return steps

    def _check_step(self, step: Step, topo: Topology) -> bool:
        return ACTIONS[step.action].check(self, step, topo)

    def host(self, topo: Topology, name: str, path: Path_, agent: bool = False) -> bool:
        """``name`` is a host of the lab (an agent workstation with ``agent``): it sends."""
        node = topo.nodes.get(name)
        if node is None:
            hosts = [n.name for n in topo.hosts() if not agent or n.role == "agent"]
            self.err(path, f"unknown host '{name}'", did_you_mean(name, hosts, "agents" if agent else "hosts"))
            return False
        if node.kind != "host":
            self.err(path, f"'{name}' is a {node.kind}; only hosts send", "name a host")
            return False
        if agent and node.role != "agent":
            self.err(path, f"'{name}' is not an agent workstation", "calls are placed from hosts with 'role: agent'")
            return False
        return True

    def _sweep(self, spec: S.SweepSpec, topo: Topology, steps: list[Step]) -> None:
        """The sweep: section names a link of the topology, a call of the timeline, and
        parameters that parse (lab/scenario/sweep.py)."""
        if (spec.a is None) != (spec.b is None):
            self.err(("sweep",), "the swept link needs both ends", "write 'sweep: {a: edge, b: isp}'")
        elif spec.a is not None and not joins(topo, spec.a, spec.b):
            self.err(("sweep", "a"), f"no link joins '{spec.a}' and '{spec.b}'",
                     "name the two ends of one link of the topology")
        calls = [s.name for s in steps if s.action == "call"]
        if spec.call is not None and spec.call not in calls:
            self.err(("sweep", "call"), f"no call named '{spec.call}' in the timeline",
                     did_you_mean(spec.call, calls, "calls"))
        for i, text in enumerate(spec.params):
            try:
                parse_param(text)
            except InputError as exc:
                p = exc.problems[0]
                self.err(("sweep", "params", i), p.message, p.hint)

    # -- expectations ------------------------------------------------------------------

    def _expectations(self, items: list[Any], steps: list[Step]) -> list[Expectation]:
        if not items:
            self.err(("expect",) if "expect" in self.doc.data else (), "the scenario has no expectations",
                     "a scenario that checks nothing can never fail: add 'expect:' with what must happen")
            return []
        out = []
        for i, raw in enumerate(items):
            path = ("expect", i)
            if not isinstance(raw, dict):
                self.err(path, f"an expectation must be a mapping, not {_kind_of(raw)}",
                         "write '- {probe: NAME, reached: true}'")
                continue
            kinds = [k for k in S.EXPECT_KEYS if k in raw]
            if len(kinds) != 1:
                self.err(path, "say what the expectation is about: " + (
                    f"one of {', '.join(S.EXPECT_KEYS)}, not {len(kinds)}" if kinds else
                    "'probe: NAME' or 'call: NAME'"), "each expectation checks one probe or one call")
                continue
            kind = kinds[0]
            if kind in S.PENDING_EXPECTS:
                self.err(path + (kind,), f"'{kind}' expectations are not available yet (they arrive with issue "
                         f"#{S.PENDING_EXPECTS[kind]})", "leave it out for now")
                continue
            model = S.EXPECT_KEYS[kind]
            try:
                spec = model.model_validate(raw)
            except ValidationError as exc:
                self.problems += [_translate(e, self.doc, path, model, tuple(e["loc"])) for e in exc.errors()]
                continue
            exp = Expectation(kind, spec, path, self.doc.line(path))
            target = getattr(spec, kind)
            ok = EXPECTS[kind].target_known(self, target, path, steps)
            if not ok and self.steps_whole and kind != "nat":
                known = [s.name for s in steps if s.action == kind and s.name]
                self.err(path + (kind,), f"no {kind} named '{target}' in the timeline",
                         did_you_mean(target, known, f"{kind}s") or f"add a '{kind}' step to the timeline")
            checks = [k for k in spec.model_fields_set if k not in ("name", "pass_", "fail", kind)]
            if not checks:
                self.err(path, "the expectation checks nothing", EXPECTS[kind].example)
                continue
            for key in ("rtt", "error_at", "first_candidate", "setup", "jitter", "jitter_max", "loss", "mappings",
                        "restart_at", "audio_back"):
                text = getattr(spec, key, None)
                if text is None:
                    continue
                if key == "mappings":
                    b, m, h = _count_bound(text)
                else:
                    b, m, h = parse_percent_bound(text) if key == "loss" else parse_bound(text)
                if m:
                    self.err(path + (key,), m, h)
                    ok = False
                else:
                    exp.bounds[key] = b
            ok = EXPECTS[kind].check(self, exp, path) and ok
            err_name = getattr(spec, "error", None)
            if err_name is not None and err_name not in SOFTPHONE_ERRORS:
                self.err(path + ("error",), f"'{err_name}' is not an error the softphone reports",
                         did_you_mean(err_name, SOFTPHONE_ERRORS, "softphone errors"))
                ok = False
            if ok:
                out.append(exp)
        return out


def _count_bound(value: int | str) -> tuple[Bound | None, str | None, str | None]:
    """A count: ``3`` exactly, or a bound ``'<= 3'``, ``'>= 4'``, ``'3 +/- 1'``."""
    hint = "write a whole number (3) or a bound: '<= 3', '>= 4'"
    if isinstance(value, int) and not isinstance(value, bool):
        return (Bound(value, value, str(value)), None, None) if value >= 0 else (None, f"{value} is negative", hint)

    def count(text: str):
        t = text.strip()
        return (float(t), None, None) if t.isdigit() else (None, f"'{t}' is not a whole number", hint)
    return parse_bound(value, count, "count", hint)


def _word(name: str) -> bool:
    return bool(re.match(r"^[a-z][a-z0-9-]*$", name))


def is_address(text: str) -> bool:
    try:
        return isinstance(ip_address(text), IPv4Address)
    except ValueError:
        return False
