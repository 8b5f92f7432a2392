"""Run a scenario: build its lab, play its timeline, evaluate its expectations, tear down.

The timeline's clock starts when the lab is up (every veth forwards) and the responders the
probes need are listening. Actions start at their time and run concurrently; the run ends
when every action has finished, or at the scenario's ``duration``. Everything observed goes
into ``Result.observations`` keyed by action and name; expectations are evaluated from there
only (``expect.py``), so a report can always show what a verdict was based on.
"""

from __future__ import annotations

import contextlib
import copy
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from ipaddress import ip_address
from pathlib import Path
from typing import Callable

from lab.core.errors import LabError
from lab.core.supervise import TimedOut, wait_until
from lab.net import Network, firewall
from lab.net.capture import Captures
from lab.net.natstat import NatSampler
from lab.services.turn.faults import control
from lab.services.turn.log import read as read_turn_log

from .actions import ACTIONS, Action
from .diagnose import (blame_rules, call_sentence, diagnose_call, diagnose_probe, turn_log_rows,
                       turn_log_summary)
from .exhaustion import exhausted, sentence
from .expect import Check, evaluate
from .load import Scenario, Step
from .observations import hangups

Progress = Callable[[str], None]


@dataclass
class Event:
    t: float                     # seconds since the timeline started
    source: str                  # runner, probe:<name>, ...
    what: str

    def to_dict(self) -> dict:
        return {"t": round(self.t, 4), "source": self.source, "what": self.what}


@dataclass
class Result:
    scenario: Scenario
    lab: str
    verdict: str = "error"                       # pass, fail, error
    checks: list[Check] = field(default_factory=list)
    observations: dict[str, dict] = field(default_factory=dict)     # "probe:NAME" -> data
    events: list[Event] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    error: str | None = None
    report_dir: str | None = None
    pcaps: dict[str, str] = field(default_factory=dict)    # "node:interface" -> file
    turn_backend: str | None = None      # embedded / coturn; None: the lab runs no TURN server

    def to_dict(self) -> dict:
        s = self.scenario
        return {"scenario": s.name, "file": s.file, "title": s.title, "claim": s.claim, "pair": s.pair,
                "variant": s.variant, "lab": self.lab, "turn_backend": self.turn_backend,
                "verdict": self.verdict, "error": self.error,
                "timings": {k: round(v, 3) for k, v in self.timings.items()},
                "checks": [c.to_dict() for c in self.checks],
                "observations": self.observations, "events": [e.to_dict() for e in self.events],
                "pcaps": self.pcaps}

    @classmethod
    def from_dict(cls, d: dict, scenario: Scenario) -> "Result":
        """A result back from ``to_dict`` (a child `icelab run --json`); the scenario is the caller's."""
        return cls(scenario, d["lab"], d["verdict"], [Check(**c) for c in d["checks"]], d["observations"],
                   [Event(**e) for e in d["events"]], d["timings"], d["error"], pcaps=d.get("pcaps", {}),
                   turn_backend=d.get("turn_backend"))


class Runner:
    def __init__(self, scenario: Scenario, progress: Progress = lambda m: None, out_dir: Path | None = None, *,
                 clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep):
        self.scenario = scenario
        # what the timeline's waits run on (tests give a fake clock: the logic without the seconds)
        self.clock, self.sleep = clock, sleep
        self.progress = progress
        self.result = Result(scenario, scenario.topology.name, turn_backend=turn_backend(scenario.topology))
        self.network: Network | None = None
        self.t0 = 0.0
        self.responders: dict[tuple[str, str, int], str] = {}   # (node, proto, port) -> the echo's log
        self.probes: list = []                                  # probes that finished (diagnosed after)
        # captures go straight into the report folder; without one, into a directory
        # removed at the end of the run
        self.pcap_dir = (Path(out_dir) / scenario.name / "pcap") if out_dir else None
        self.captures: Captures | None = None
        self.deleted_rules: dict[str, list[dict]] = {}     # firewall -> last counters of deleted rules
        self.added_rules: dict[str, dict[int, float]] = {}   # firewall -> rule number -> when added
        self._turn_logs: dict[str, list[dict]] = {}          # TURN host -> its transaction log
        self.t0_wall = 0.0                                    # time.time() when the timeline started
        self._mark = 0.0                                      # the last lap's end (timings)
        self.warm: dict = {}                                  # softphones started, waiting for their step
        self.exhausted: list[str] = []                        # NAT resources that ran out (sentences)
        self.log_marks: dict[Path, int] = {}                  # a reused lab's service logs: bytes before this run

    def event(self, source: str, what: str) -> None:
        self.result.events.append(Event(time.monotonic() - self.t0, source, what))

    def add_event(self, t: float, source: str, what: str) -> None:
        """An event at a time already on the scenario's clock (a softphone's)."""
        self.result.events.append(Event(t, source, what))

    def steps_of(self, action: str) -> list[Step]:
        return [s for s in self.scenario.steps if s.action == action]

    def _each_action(self):
        """Each action of the registry with its steps in this scenario (those it has)."""
        for name, act in ACTIONS.items():
            steps = self.steps_of(name)
            if steps:
                yield act, steps

    def far_end(self, call_id: str, wait: float = 3.0) -> dict | None:
        """What the cloud's caller leg received from the agent on call ``call_id`` (the media
        edge logs it when the call is hung up, just after it answers the agent's ``bye``)."""
        logs = [(rs.log_path, self.log_marks.get(rs.log_path, 0))
                for rs in getattr(self.network, "services", None) or [] if rs.service == "signalling"]
        if not logs:
            return None
        try:
            return wait_until(lambda: _hangup_line(logs, call_id), wait, what=f"the far end's hang-up of {call_id}",
                              clock=self.clock, sleep=self.sleep)
        except TimedOut:
            return None

    def _capture_points(self) -> list[tuple[str, str]]:
        topo = self.scenario.topology
        points: dict[tuple[str, str], None] = {}
        for step in self.scenario.steps:
            for p in ACTIONS[step.action].capture_path(topo, step) or []:
                points[(p.node, p.interface)] = None
        return list(points)

    def run(self, lab: Network | None = None) -> Result:
        """Build the lab, run, tear it down; or run in ``lab``, a lab already up (built from
        ``planned_topology()``) that the caller keeps: a sweep's next grid point, where only
        link settings change (lab/scenario/sweep.py says when that is the same as a new lab)."""
        s = self.scenario
        t_start = time.monotonic()
        tmp = None
        lap = self._lap
        network = lab or Network(self._topology())
        if lab is None:
            network.before_services = self._before_services
        try:
            with network if lab is None else contextlib.nullcontext(lab) as net:
                self.network = net
                if lab is not None:
                    self._reuse(net)
                self.result.timings["build"] = time.monotonic() - t_start
                for k, v in net.timings.items():        # where the build's time went
                    self.result.timings[f"build.{k}"] = v
                self._mark = time.monotonic()
                for act, steps in self._each_action():
                    act.before_timeline(self, steps)
                lap("responders")
                points = self._capture_points() if s.capture == "auto" else []
                if points:
                    if self.pcap_dir is None:
                        tmp = Path(tempfile.mkdtemp(prefix="icelab-pcap-"))
                    self.captures = Captures(self.pcap_dir or tmp)
                    self.captures.start(net, points)
                lap("captures_start")
                self.progress(f"{s.name}: running the timeline")
                self._timeline()
                self._mark = time.monotonic()
                self._read_turn_logs()
                lap("turn_logs")
                if self.captures:
                    self.captures.stop()
                lap("captures_stop")
                self._firewall_counters()
                lap("firewall_counters")
                self.network = None
                for c in self.warm.values():       # calls the timeline never reached
                    c.kill()
            lap("teardown")
            self.result.timings["total"] = time.monotonic() - t_start
            self._diagnose()
            lap("diagnose")
        except (RuntimeError, LabError) as exc:     # lab.net still raises RuntimeError in places
            self.result.error = str(exc)
        finally:
            if tmp is not None:
                shutil.rmtree(tmp, ignore_errors=True)
        return self.judge()

    # -- for a driver that plays the timeline itself (icelab serve: a step when the trainer
    # -- plays it, lab/serve/scenario.py); run() is the same pieces on the scenario's clock

    def plan(self):
        """The topology to build for this scenario (with what its actions need of the build)."""
        return self._topology()

    def before_services(self, network) -> None:
        """For ``Network.before_services``: what the actions start while the services start."""
        self._before_services(network)

    def begin(self, network, pcap_dir: Path) -> None:
        """What run() does between the build and the first step: the actions' preparations,
        the captures on the steps' paths (in ``pcap_dir`` when the runner has no out_dir),
        the scenario's clock started."""
        self.network = network
        for act, steps in self._each_action():
            act.before_timeline(self, steps)
        points = self._capture_points() if self.scenario.capture == "auto" else []
        if points:
            self.captures = Captures(self.pcap_dir or pcap_dir)
            self.captures.start(network, points)
        self.t0, self.t0_wall = time.monotonic(), time.time()

    def start_step(self, step: Step):
        """Start one step now, as the timeline does at its time; what is still in flight
        (``done()``, ``finish(runner)``) or None."""
        act = ACTIONS[step.action]
        self.event("runner", act.describe(step))
        return act.start(self, step)

    def conclude(self, pending: list) -> None:
        """What run() does once the timeline is over, with the lab still up: what is in
        flight finished, the TURN logs read, the captures stopped, the firewall counters
        read; then the diagnosis."""
        for p in pending:
            p.finish(self)
        self._read_turn_logs()
        if self.captures:
            self.captures.stop()
        self._firewall_counters()
        self._diagnose()

    def judge(self) -> Result:
        """The expectations evaluated from the observations, and the verdict."""
        self.result.checks = evaluate(self.scenario, self.result.observations)
        if self.result.error or any(c.status == "error" for c in self.result.checks):
            self.result.verdict = "error"
        elif all(c.status == "pass" for c in self.result.checks):
            self.result.verdict = "pass"
        else:
            self.result.verdict = "fail"
        return self.result

    def planned_topology(self):
        """The topology a lab for this scenario is built from (see ``run``'s ``lab``)."""
        return self._topology()

    def _reuse(self, net) -> None:
        """What a build does for a run, in a lab already up: the softphones started (and ready,
        as they are after the services' start), and the services' logs marked, so that this
        run reads only its own lines."""
        self.log_marks = {rs.log_path: _size(rs.log_path) for rs in net.services}
        self._before_services(net)
        for c in self.warm.values():
            c.ready.wait(15.0)

    def _before_services(self, network) -> None:
        """What actions start while the lab's services start (a call's softphone: it waits)."""
        for act, steps in self._each_action():
            act.before_services(self, network, steps)

    def _lap(self, name: str) -> None:
        """Time since the previous lap, into ``timings`` (result.json): where a run's time goes."""
        now = time.monotonic()
        self.result.timings[name] = now - self._mark
        self._mark = now

    def _firewall_counters(self) -> None:
        """Each firewall's (and NAT's) rules with what they counted during the run
        (lab/net/firewall.py): a NAT's masquerade rule counts the mappings it created."""
        for node in self.scenario.topology.nodes.values():
            if node.kind not in ("firewall", "nat"):
                continue
            try:
                rules = firewall.counters(self.network.node(node.name).pid)
            except RuntimeError as exc:
                self.result.observations[f"firewall:{node.name}"] = {"error": str(exc)}
                continue
            added = self.added_rules.get(node.name, {})
            self.result.observations[f"firewall:{node.name}"] = {
                "rules": [dict(r.to_dict(), action=r.action, sentence=r.sentence(),
                               **({"added_at": added[r.number]} if r.number in added else {})) for r in rules]
                + self.deleted_rules.get(node.name, [])}

    def _topology(self):
        """The scenario's topology, with what its actions need of the build (the calls it
        places registered with the cloud)."""
        acts = [(act, steps) for act, steps in self._each_action() if act.plan.__func__ is not Action.plan.__func__]
        if not acts:
            return self.scenario.topology
        topo = copy.deepcopy(self.scenario.topology)
        for act, steps in acts:
            act.plan(topo, steps)
        return topo

    def _read_turn_logs(self) -> None:
        """The embedded TURN servers' transaction logs (lab/services/turn/log.py), read while
        the lab is up; a control request first flushes what the server still buffers.
        coturn keeps no such log."""
        for rs in self.network.services:
            if rs.service != "turn" or rs.config.get("backend", "embedded") != "embedded" or not rs.config.get("log"):
                continue
            if rs.proc.poll() is None and rs.config.get("control"):
                try:
                    control(rs.config["control"], {"status": True}, timeout=2)
                except OSError:
                    pass
            try:
                self._turn_logs[rs.node] = read_turn_log(rs.config["log"])
            except (OSError, ValueError):
                continue
            if self.pcap_dir is not None:
                self.pcap_dir.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(rs.config["log"], self.pcap_dir.parent / f"turn-{rs.node}.transactions.jsonl")

    def _diagnose_calls(self, pcaps: dict) -> None:
        """For each call: its STUN/TURN transactions at each capture point, the rules that
        dropped them, TURN's log of them; for a failed call one sentence from all that."""
        topo = self.scenario.topology
        turn = next((n.name for n in topo.nodes.values() if n.kind == "host" and "turn" in n.services), None)
        if turn is None:
            return
        for step in self.scenario.steps:
            obs = self.result.observations.get(f"call:{step.name}") if step.action == "call" else None
            if not obs or "error" in obs:
                continue
            d = diagnose_call(topo, step.spec.from_, turn, pcaps)
            blame_rules(d, self.result.observations)
            summary = None
            if turn in self._turn_logs:
                rows = turn_log_rows(self._turn_logs[turn], d.get("clients_at_turn", []), self.t0_wall)
                d["turn_log"] = rows
                summary = turn_log_summary(rows, turn)
            obs["transactions"] = d
            if not obs.get("reached_talking"):
                obs["diagnosis"] = call_sentence(d, summary, self.result.turn_backend, obs.get("softphone_error"))
                if self.exhausted:      # the NAT that refused its flows says which resource ran out
                    obs["diagnosis"] += "; " + "; ".join(self.exhausted)

    def _diagnose(self) -> None:
        if not self.captures:
            return
        pcaps = self.captures.files()
        self._diagnose_calls(pcaps)
        if self.pcap_dir is not None:
            self.result.pcaps = {k: str(v) for k, v in pcaps.items()}
        for p in self.probes:
            obs = self.result.observations.get(p.key)
            if obs and "error" not in obs:
                obs.update(diagnose_probe(self.scenario.topology, obs, p.run_id, p.step.spec, pcaps,
                                          ip_address(p.address)))
                if obs.get("requests_received") is None and obs.get("no_route"):
                    obs["requests_received"] = 0          # nothing can arrive from a host without a route
                elif obs.get("requests_received") is None and obs.get("requests_path"):
                    last = obs["requests_path"][-1]
                    if last["at"].split(":")[0] == p.step.spec.to or p.step.spec.to not in self.scenario.topology.nodes:
                        obs["requests_received"] = last["count"]
                blame_rules(obs, self.result.observations)

    def _timeline(self) -> None:
        s = self.scenario
        self.t0 = time.monotonic()
        self.t0_wall = time.time()
        self.event("runner", "timeline starts")
        nats = {n.name: self.network.node(n.name).pid for n in s.topology.nodes.values() if n.kind == "nat"}
        sampler = NatSampler(nats, self.t0).start() if nats else None
        pending: list = []              # what is in flight: done() and finish(run)
        for step in s.steps:
            wait = self.t0 + step.at - time.monotonic()
            if wait > 0:
                self._poll(pending, until=self.t0 + step.at)
            act = ACTIONS[step.action]
            self.event("runner", act.describe(step))
            running = act.start(self, step)
            if running is not None:
                pending.append(running)
        end = self.t0 + s.duration if s.duration is not None else None
        while pending:
            self._poll(pending, until=time.monotonic() + 0.05)
            if end is not None and time.monotonic() > end:
                break
        for p in pending:
            p.finish(self)
        if sampler is not None:
            self._nat_resources(sampler.stop())
        self.result.events.sort(key=lambda e: e.t)
        self.result.timings["timeline"] = time.monotonic() - self.t0
        self.event("runner", "timeline ends")

    def _nat_resources(self, series: dict) -> None:
        """Which resource of which NAT ran out, and when (lab/scenario/exhaustion.py): an
        event, an observation, and a sentence added to each failed call's diagnosis."""
        for node, samples in series.items():
            policy = self.scenario.topology.nodes[node].policy
            x = exhausted(node, samples, getattr(policy, "ports", None))
            if x is None:
                continue
            words = sentence(x)
            self.result.observations[f"nat-resources:{node}"] = dict(x, sentence=words)
            self.add_event(x["at"], f"nat:{node}", f"{x['resource']} exhausted: {words}")
            self.exhausted.append(words)

    def _poll(self, pending: list, until: float) -> None:
        """Finish what is in flight as it gets done, until the clock reads ``until``."""
        def step_due() -> bool:
            for p in [p for p in pending if p.done()]:
                p.finish(self)
                pending.remove(p)
            return self.clock() >= until
        # the wait's last sleep is cut to its deadline, which is ``until``: it returns there
        wait_until(step_due, max(0.0, until - self.clock()), 0.01, what="the next step's time",
                   clock=self.clock, sleep=self.sleep)


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _hangup_line(logs: list[tuple[Path, int]], call_id: str) -> dict | None:
    """What the media edge logged for ``call_id``'s caller leg when it hung up, if it did yet
    (in each log after its offset: a reused lab's earlier calls had the same id)."""
    for log, offset in logs:
        try:
            with open(log, "rb") as f:
                f.seek(offset)
                text = f.read().decode(errors="replace")
        except OSError:
            continue
        item = hangups(text).get(call_id)
        if item is not None:
            return {k: item.get(k) for k in ("heard_hz", "heard_dbfs", "packets_received", "packets_lost")}
    return None


def turn_backend(topo) -> str | None:
    """The TURN backend a lab runs (embedded or coturn), None when no host runs turn."""
    if not any("turn" in n.services for n in topo.nodes.values() if n.kind == "host"):
        return None
    return (topo.services.get("turn") or {}).get("backend", "embedded")


def run_scenario(scenario: Scenario, progress: Progress = lambda m: None, out_dir: Path | None = None,
                 lab: Network | None = None) -> Result:
    """Run one scenario; with ``out_dir``, its captures are kept in ``out_dir/<name>/pcap/``;
    with ``lab``, in that lab, already up, which stays up (``Runner.run``)."""
    return Runner(scenario, progress, out_dir).run(lab)
