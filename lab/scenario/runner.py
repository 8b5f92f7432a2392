"""Run a scenario: build its lab, play its timeline, evaluate its expectations, tear down.

The timeline's clock starts when the lab is up (every veth forwards) and the responders the
probes need are listening. Actions start at their time and run concurrently; the run ends
when every action has finished, or at the scenario's ``duration``. Everything observed goes
into ``Result.observations`` keyed by action and name; expectations are evaluated from there
only (``expect.py``), so a report can always show what a verdict was based on.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from lab.core.errors import LabError
from lab.net import Network
from lab.net.capture import Captures
from lab.net.state import run_dir

from .diagnose import blame_rules, diagnose_probe, path_points
from .expect import Check, evaluate
from .load import Scenario, Step

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


class _Probe:
    """A probe step in flight: the sender's process in the source node."""

    def __init__(self, run: "Runner", step: Step):
        spec = step.spec
        self.step = step
        self.key = f"probe:{step.name}"
        self.run_id = uuid.uuid4().hex[:10]
        self.address = run.address_of(spec.to)
        self.service = run.service_on(spec)
        self.responder = None if self.service else run.responder_for(spec)
        from lab.core.units import parse_duration
        self.interval = parse_duration(spec.interval)[0]
        self.timeout = parse_duration(spec.timeout)[0]
        argv = [sys.executable, "-m", "lab.net.probe", "send", "--proto", spec.proto, "--to", self.address,
                "--port", str(spec.port), "--count", str(spec.count), "--interval", str(self.interval),
                "--timeout", str(self.timeout), "--run", self.run_id]
        if spec.sport:
            argv += ["--sport", str(spec.sport)]
        self.proc = run.network.node(spec.from_).popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.deadline = time.monotonic() + spec.count * self.interval + self.timeout + 5.0

    def done(self) -> bool:
        return self.proc.poll() is not None

    def finish(self, run: "Runner") -> None:
        try:
            out, errs = self.proc.communicate(timeout=max(0.1, self.deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, errs = self.proc.communicate()
            run.result.observations[self.key] = {"error": "the probe did not finish in time"}
            return
        try:
            data = json.loads(out.decode().strip().splitlines()[-1])
        except (ValueError, IndexError):
            run.result.observations[self.key] = {"error": f"the probe failed: {errs.decode()[-300:]}"}
            return
        from lab.net.probe import received
        spec = self.step.spec
        data.update(from_node=spec.from_, to_node=spec.to)
        if self.responder is not None:
            got = received(self.responder, self.run_id)
            data.update(requests_received=len({g["req"] for g in got}),
                        seen_from=sorted({f"{g['src']}:{g['sport']}" for g in got}))
        else:
            # a lab service answers on this port: what arrived is counted in the captures
            data.update(requests_received=None, answered_by=self.service)
        run.result.observations[self.key] = data
        run.probes.append(self)
        arrived = "" if data["requests_received"] is None else f"{data['requests_received']} arrived at {spec.to}, "
        run.event(self.key, f"{data['sent']} sent, {arrived}{data['replies']} replies back")


class _Call:
    """A softphone call in flight: ``python -m lab.agent`` in the agent's namespace, its JSON
    lines read as they come so that its events land on the scenario's clock."""

    MAX_S = 90.0

    def __init__(self, run: "Runner", step: Step, network=None):
        """Start the softphone process; it imports what it needs (about 0.6 s of Python and
        aiortc) and waits: ``go()`` at the step's time places the call. The runner starts
        it while the lab's services start (Network.before_services)."""
        import threading
        spec = step.spec
        self.step = step
        self.key = f"call:{step.name}"
        network = network or run.network
        d = network.state.dir
        cfg = d / f"agent-{step.name}.json"
        from lab.core.units import parse_duration
        agent_cfg = {"call": str(d / "calls" / f"{step.name}.json"), "ca": str(d / "pki" / "ca.pem"),
                     "talk_time": parse_duration(spec.talk)[0], "profile": spec.profile, "engine": spec.engine,
                     "mdns": spec.mdns}
        self.runs_on = engine_node(run.scenario.topology, spec)      # where the softphone runs
        if spec.vdi is not None:
            client = run.scenario.topology.nodes[spec.from_].vdi
            agent_cfg["vdi"] = {"mode": spec.vdi, "desktop": str(client.address), "port": client.port}
        cfg.write_text(json.dumps(agent_cfg))
        self.lines: list[tuple[float, dict]] = []
        self.stderr = b""
        self.run = run
        self.ready = threading.Event()
        self.proc = network.node(self.runs_on).popen(
            [sys.executable, "-m", "lab.agent", "--wait", "--config", str(cfg)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        self.started = 0.0
        self.deadline = time.monotonic() + self.MAX_S

    def go(self) -> "_Call":
        """Place the call now (the step's time)."""
        self.started = time.monotonic() - self.run.t0
        self.deadline = time.monotonic() + self.MAX_S
        try:
            self.proc.stdin.write(b"go\n")
            self.proc.stdin.close()
        except (BrokenPipeError, ValueError):
            pass            # it died while waiting: finish() reports its stderr
        self.proc.stdin = None      # communicate() must not flush it again
        return self

    def _read(self) -> None:
        for raw in self.proc.stdout:
            try:
                item = json.loads(raw)
            except ValueError:
                continue
            if item.get("ready"):
                self.ready.set()
                continue
            self.lines.append((time.monotonic() - self.run.t0, item))

    def done(self) -> bool:
        return self.proc.poll() is not None

    def finish(self, run: "Runner") -> None:
        try:
            _, self.stderr = self.proc.communicate(timeout=max(0.1, self.deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.communicate()
        self.reader.join(5)
        outcome = next((item["outcome"] for _, item in self.lines if "outcome" in item), None)
        if outcome is None:
            run.result.observations[self.key] = {
                "error": f"the softphone did not report an outcome: {self.stderr.decode(errors='replace')[-400:]}"}
            return
        events = [(t, e) for t, e in self.lines if "kind" in e]
        obs = dict(outcome, timeline=[e for _, e in events])
        ice = next((e["t"] for _, e in events if e["kind"] == "state" and e["name"] == ICE_STATE), None)
        first = next((e["t"] for _, e in events if e["kind"] == "candidate" and e["name"] == "relay"), None)
        err = next((e for _, e in events if e["kind"] == "error"), None)
        talking = next((e["t"] for _, e in events if e["kind"] == "state" and e["name"] == "TalkingState"), None)
        # an error is timed from the start of the state it failed in: that is when the softphone's
        # timer for it started (ICE and connect timers: the ICE state; the invite timer:
        # InviteAnswerState); an error before any state (the VDI plug-in's) from the call's start
        failed_in = err and next((e["t"] for _, e in events if e["kind"] == "state" and e["name"] == err.get("state")),
                                 None)
        start = events[0][1]["t"] if events else 0.0
        since = failed_in if failed_in is not None else (start if err is not None and ice is None else None)
        obs["times"] = {"ice_start": ice, "first_candidate": None if first is None or ice is None else first - ice,
                        "error": None if err is None or since is None else err["t"] - since,
                        "error_state": err and (err.get("state") if failed_in is not None else None),
                        "error_from": "call" if err is not None and failed_in is None else "state",
                        "talking": talking}
        if outcome.get("reached_talking"):
            obs["far_end"] = run.far_end(self.step.name)
        if self.step.spec.vdi is not None:
            from lab.net.vdi import call_observation
            obs["vdi"] = call_observation(run.network, self.step.spec.from_, self.step.spec.vdi, self.runs_on)
        run.result.observations[self.key] = obs
        if self.lines:      # from 'go' to the softphone's first event: lab overhead, not the call's
            run.result.timings[f"agent_start.{self.step.name}"] = self.lines[0][0] - self.started
        for t, e in events:
            if e["kind"] in ("state", "error") or (e["kind"] == "candidate" and e["name"] == "relay"):
                what = e["name"] if e["kind"] != "error" else f"{e['name']} ({e.get('softphone_error')})"
                run.result.events.append(Event(t, self.key, what))
        verdict = "talking" if outcome.get("reached_talking") else (outcome.get("softphone_error") or "failed")
        run.event(self.key, f"ended: {outcome['state']}, {verdict}")


ICE_STATE = "ConnectSignalingAndIceCollectionState"


def engine_node(topo, spec) -> str:
    """Where a call's softphone runs: the host itself, or under VDI without redirection the
    thin client's virtual desktop (docs/vdi.md)."""
    if spec.vdi in ("in-desktop", "redirect-unavailable"):
        return topo.nodes[spec.from_].vdi.desktop
    return spec.from_


class Runner:
    def __init__(self, scenario: Scenario, progress: Progress = lambda m: None, out_dir: Path | None = None):
        self.scenario = scenario
        self.progress = progress
        self.result = Result(scenario, scenario.topology.name, turn_backend=turn_backend(scenario.topology))
        self.network: Network | None = None
        self.t0 = 0.0
        self._responders: dict[tuple[str, str, int], str] = {}
        self.probes: list[_Probe] = []
        # captures go straight into the report folder; without one, into a directory
        # removed at the end of the run
        self.pcap_dir = (Path(out_dir) / scenario.name / "pcap") if out_dir else None
        self.captures: Captures | None = None
        self._deleted_rules: dict[str, list[dict]] = {}    # firewall -> last counters of deleted rules
        self._added_rules: dict[str, dict[int, float]] = {}  # firewall -> rule number -> when added
        self._turn_logs: dict[str, list[dict]] = {}          # TURN host -> its transaction log
        self.t0_wall = 0.0                                    # time.time() when the timeline started
        self._mark = 0.0                                      # the last lap's end (timings)
        self._warm: dict[str, _Call] = {}                     # softphones started, waiting for their step

    def event(self, source: str, what: str) -> None:
        self.result.events.append(Event(time.monotonic() - self.t0, source, what))

    def far_end(self, call_id: str, wait: float = 3.0) -> dict | None:
        """What the cloud's caller leg received from the agent on call ``call_id`` (the media
        edge logs it when the call is hung up, just after it answers the agent's ``bye``)."""
        logs = [rs.log_path for rs in getattr(self.network, "services", None) or [] if rs.service == "signalling"]
        deadline = time.monotonic() + wait
        while logs:
            for log in logs:
                try:
                    lines = log.read_text(errors="replace").splitlines()
                except OSError:
                    continue
                for line in reversed(lines):
                    if f'"callId": "{call_id}"' in line and '"event": "hangup"' in line:
                        try:
                            item = json.loads(line)
                        except ValueError:
                            continue
                        return {k: item.get(k) for k in ("heard_hz", "heard_dbfs", "packets_received", "packets_lost")}
            if time.monotonic() > deadline:
                break
            time.sleep(0.05)
        return None

    def address_of(self, to: str) -> str:
        topo = self.scenario.topology
        return str(topo.address_of(to)) if to in topo.nodes else to

    def _capture_points(self) -> list[tuple[str, str]]:
        from ipaddress import ip_address
        topo = self.scenario.topology
        points: dict[tuple[str, str], None] = {}
        turn = next((n.name for n in topo.nodes.values() if "turn" in n.services), None)
        for step in self.scenario.steps:
            path = None
            if step.action == "probe":
                path = path_points(topo, step.spec.from_, ip_address(self.address_of(step.spec.to)))
            elif step.action == "call" and turn:      # the softphone's media goes to TURN
                path = path_points(topo, engine_node(topo, step.spec), topo.address_of(turn))
            for p in path or []:
                points[(p.node, p.interface)] = None
        return list(points)

    def service_on(self, spec) -> str | None:
        """The lab service listening where the probe goes ('turn on turn, udp 3478'), if any."""
        node = spec.to if spec.to in self.scenario.topology.nodes else self._node_of(spec.to)
        want = "tcp" if spec.proto == "tcp" else "udp"
        for rs in getattr(self.network, "services", None) or []:
            if rs.node == node and any(p == want and port == spec.port for p, _ip, port in rs.listens):
                return f"{rs.service} on {node}, {want} {spec.port}"
        return None

    def responder_for(self, spec) -> str:
        node = spec.to if spec.to in self.scenario.topology.nodes else self._node_of(spec.to)
        return self._responders[(node, spec.proto, spec.port)]

    def _node_of(self, address: str) -> str:
        return next(n.name for n in self.scenario.topology.nodes.values()
                    if any(str(a.ip) == address for a in n.addresses))

    def _start_responders(self) -> None:
        wanted = {}
        for step in self.scenario.steps:
            if step.action == "probe":
                s = step.spec
                service = self.service_on(s)
                if service and s.proto == "udp":
                    raise RuntimeError(f"{step.name}: UDP {s.port} on {s.to} is the lab's {service.split()[0]} "
                                       f"service, which would drop the probe's packets: use 'proto: stun'")
                if service:
                    continue
                node = s.to if s.to in self.scenario.topology.nodes else self._node_of(s.to)
                wanted[(node, s.proto, s.port)] = None
        procs = []
        d = run_dir() / self.scenario.topology.name
        for node, proto, port in wanted:
            log = str(d / f"probe-{node}-{proto}{port}.jsonl")
            self._responders[(node, proto, port)] = log
            p = self.network.node(node).popen(
                [sys.executable, "-m", "lab.net.probe", "serve", "--proto", proto, "--port", str(port), "--log", log],
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
            procs.append((node, proto, port, p))
        for node, proto, port, p in procs:
            line = p.stdout.readline().decode().strip()
            if line != "ready":
                raise RuntimeError(f"the probe responder on {node} ({proto} {port}) did not start: {line}")

    def run(self) -> Result:
        s = self.scenario
        t_start = time.monotonic()
        tmp = None
        lap = self._lap
        network = Network(self._topology())
        network.before_services = self._start_softphones
        try:
            with network as net:
                self.network = net
                self.result.timings["build"] = time.monotonic() - t_start
                for k, v in net.timings.items():        # where the build's time went
                    self.result.timings[f"build.{k}"] = v
                self._mark = time.monotonic()
                self._start_responders()
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
                for c in self._warm.values():      # calls the timeline never reached
                    c.proc.kill()
                    c.proc.wait()
            lap("teardown")
            self.result.timings["total"] = time.monotonic() - t_start
            self._diagnose()
            lap("diagnose")
        except (RuntimeError, LabError) as exc:
            self.result.error = str(exc)
        finally:
            if tmp is not None:
                shutil.rmtree(tmp, ignore_errors=True)
        self.result.checks = evaluate(s, self.result.observations)
        if self.result.error or any(c.status == "error" for c in self.result.checks):
            self.result.verdict = "error"
        elif all(c.status == "pass" for c in self.result.checks):
            self.result.verdict = "pass"
        else:
            self.result.verdict = "fail"
        return self.result

    def _start_softphones(self, network) -> None:
        """Each call's softphone process, started while the services start (it waits)."""
        for step in self.scenario.steps:
            if step.action == "call":
                self._warm[step.name] = _Call(self, step, network)

    def _lap(self, name: str) -> None:
        """Time since the previous lap, into ``timings`` (result.json): where a run's time goes."""
        now = time.monotonic()
        self.result.timings[name] = now - self._mark
        self._mark = now

    def _firewall_counters(self) -> None:
        """Each firewall's (and NAT's) rules with what they counted during the run
        (lab/net/firewall.py): a NAT's masquerade rule counts the mappings it created."""
        from lab.net import firewall
        for node in self.scenario.topology.nodes.values():
            if node.kind not in ("firewall", "nat"):
                continue
            try:
                rules = firewall.counters(self.network.node(node.name).pid)
            except RuntimeError as exc:
                self.result.observations[f"firewall:{node.name}"] = {"error": str(exc)}
                continue
            added = self._added_rules.get(node.name, {})
            self.result.observations[f"firewall:{node.name}"] = {
                "rules": [dict(r.to_dict(), action=r.action, sentence=r.sentence(),
                               **({"added_at": added[r.number]} if r.number in added else {})) for r in rules]
                + self._deleted_rules.get(node.name, [])}

    def _link(self, step: Step) -> None:
        """Impairments changed now (lab/net/shaping.py): effective within milliseconds."""
        from lab.net import shaping
        spec = step.spec
        try:
            now = shaping.change_impairment(self.network, spec.a, spec.b, spec.settings, spec.direction,
                                            clear=spec.clear, origin=self.scenario.file)
        except LabError as exc:
            raise RuntimeError(f"changing link {spec.a}-{spec.b}: {exc}") from exc
        self.event("link:" + step.name, "; ".join(f"{d}: {imp.describe()}" for d, imp in now.items()))

    def _topology(self):
        """The scenario's topology, with the calls it places registered with the cloud
        (the signalling mock answers each as the scenario says)."""
        import copy
        from lab.core.units import parse_duration
        calls = [st for st in self.scenario.steps if st.action == "call"]
        if not calls:
            return self.scenario.topology
        topo = copy.deepcopy(self.scenario.topology)
        plans = topo.services.setdefault("signalling", {}).setdefault("calls", {})
        for st in calls:
            plan = {"behaviour": st.spec.answer, "answer_delay": parse_duration(st.spec.answer_delay)[0]}
            if st.spec.wrong_token:
                plan["contact_ctx"] = "not-the-token-the-cloud-expects"
            plans[st.name] = plan
        return topo

    def _read_turn_logs(self) -> None:
        """The embedded TURN servers' transaction logs (lab/services/turn/log.py), read while
        the lab is up; a control request first flushes what the server still buffers.
        coturn keeps no such log."""
        from lab.services.turn.faults import control
        from lab.services.turn.log import read
        for rs in self.network.services:
            if rs.service != "turn" or rs.config.get("backend", "embedded") != "embedded" or not rs.config.get("log"):
                continue
            if rs.proc.poll() is None and rs.config.get("control"):
                try:
                    control(rs.config["control"], {"status": True}, timeout=2)
                except OSError:
                    pass
            try:
                self._turn_logs[rs.node] = read(rs.config["log"])
            except (OSError, ValueError):
                continue
            if self.pcap_dir is not None:
                self.pcap_dir.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(rs.config["log"], self.pcap_dir.parent / f"turn-{rs.node}.transactions.jsonl")

    def _diagnose_calls(self, pcaps: dict) -> None:
        """For each call: its STUN/TURN transactions at each capture point, the rules that
        dropped them, TURN's log of them; for a failed call one sentence from all that."""
        from .diagnose import call_sentence, diagnose_call, turn_log_rows, turn_log_summary
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

    def _diagnose(self) -> None:
        if not self.captures:
            return
        from ipaddress import ip_address
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
        pending: list[_Probe] = []
        for step in s.steps:
            wait = self.t0 + step.at - time.monotonic()
            if wait > 0:
                self._poll(pending, until=self.t0 + step.at)
            self.event("runner", f"{step.action} {step.name or ''}".strip())
            if step.action == "probe":
                pending.append(_Probe(self, step))
            elif step.action == "call":
                pending.append((self._warm.pop(step.name, None) or _Call(self, step)).go())
            elif step.action == "link":
                self._link(step)
            elif step.action == "flush-conntrack":
                from lab.net.nat import flush_conntrack
                flush_conntrack(self.network.node(step.spec.node).pid)
                self.event(f"conntrack:{step.name}", "flushed (a firewall or NAT reboot)")
            elif step.action == "turn":
                from .live import turn_action
                self.event(f"turn:{step.spec.node}", turn_action(self.network, step.spec))
            elif step.action == "rule":
                from .live import rule_action
                what, number, gone = rule_action(self.network, step.spec, step.before)
                now = round(time.monotonic() - self.t0, 3)
                if gone is not None:
                    self._deleted_rules.setdefault(step.spec.node, []).append(dict(gone, deleted_at=now))
                else:
                    self._added_rules.setdefault(step.spec.node, {})[number] = now
                self.event(f"rule:{step.spec.node}", what)
        end = self.t0 + s.duration if s.duration is not None else None
        while pending:
            self._poll(pending, until=time.monotonic() + 0.05)
            if end is not None and time.monotonic() > end:
                break
        for p in pending:
            p.finish(self)
        self.result.events.sort(key=lambda e: e.t)
        self.result.timings["timeline"] = time.monotonic() - self.t0
        self.event("runner", "timeline ends")

    def _poll(self, pending: list, until: float) -> None:
        while True:
            for p in [p for p in pending if p.done()]:
                p.finish(self)
                pending.remove(p)
            left = until - time.monotonic()
            if left <= 0:
                return
            time.sleep(min(left, 0.01))


def turn_backend(topo) -> str | None:
    """The TURN backend a lab runs (embedded or coturn), None when no host runs turn."""
    if not any("turn" in n.services for n in topo.nodes.values() if n.kind == "host"):
        return None
    return (topo.services.get("turn") or {}).get("backend", "embedded")


def run_scenario(scenario: Scenario, progress: Progress = lambda m: None, out_dir: Path | None = None) -> Result:
    """Run one scenario; with ``out_dir``, its captures are kept in ``out_dir/<name>/pcap/``."""
    return Runner(scenario, progress, out_dir).run()


def write_report(result: Result, out_dir: Path) -> Path:
    """result.json, report.md and a picture of the topology in ``out_dir/<scenario>/``."""
    from lab.report.scenario import write
    return write(result, out_dir)
