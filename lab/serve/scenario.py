"""Scenario mode of ``icelab serve SCENARIO``: the scenario's lab, with its timeline as a list
of steps the trainer plays one at a time, or plays on (the rest of the timeline at its
``at:`` times) and pauses; each step narrated by the claims and the pass/fail text of the
expectations about it; once the last one has played, the verdict and the report.

The scenario runner (lab/scenario/runner.py) does the work, exactly as ``icelab run`` does,
through its public pieces (plan, before_services, begin, start_step, conclude, judge): its
topology plan (the calls registered with the cloud), its softphones warmed while the
services start, its captures, each step through the actions registry, and at the end its
firewall counters, its diagnosis and the expectations. Only the clock differs: the
scenario's clock runs while the trainer plays and stands still while paused; a step played
by hand sets it to that step's ``at:``.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

from lab.core.errors import LabError
from lab.net import Network
from lab.report.scenario import write
from lab.scenario.actions import ACTIONS
from lab.scenario.runner import Runner

from .live import Conflict, LiveLab


def build(scenario, out_dir: Path) -> tuple[Network, Runner]:
    """The network to build for ``scenario`` and the runner that will play it."""
    runner = Runner(scenario, out_dir=out_dir)
    network = Network(runner.plan())
    network.before_services = runner.before_services
    return network, runner


class ScenarioLab(LiveLab):
    def __init__(self, network, publish, scenario, runner: Runner, out_dir: Path):
        super().__init__(network, publish, scenario)
        self.runner = runner
        self.out_dir = out_dir
        self.played: list[dict] = []
        self.pending: list = []          # what the played steps still have in flight
        self.verdict: dict | None = None
        self.report_dir: Path | None = None
        self._busy = False
        # the scenario's clock (s on the at: scale): where it stood when last stopped, and
        # since when it runs (monotonic) while the rest of the timeline plays
        self.clock = 0.0
        self._running_since: float | None = None
        self._pause = threading.Event()
        self._player: threading.Thread | None = None

    def start_captures(self) -> None:
        """The session's captures (download links), then the runner's own on the steps' paths
        (its diagnosis reads them), and what its actions do before the timeline."""
        super().start_captures()
        self.runner.begin(self.network, self.network.state.dir / "serve-scenario-pcap")
        self.runner.event("runner", "timeline starts (played by the trainer)")

    def scenario_info(self) -> dict:
        s = self.scenario
        return {"name": s.name, "title": s.title, "claim": s.claim, "variant": s.variant,
                "steps": [{"index": i, "at": st.at, "action": st.action, "name": st.name,
                           "what": ACTIONS[st.action].describe(st), "claims": self._claims(st)}
                          for i, st in enumerate(s.steps)],
                "played": self.played, "verdict": self.verdict,
                "playing": self._running_since is not None, "clock": round(self.now(), 3), "t": time.time()}

    def now(self) -> float:
        """Where the scenario's clock stands (s on the at: scale)."""
        since = self._running_since
        return self.clock + (time.monotonic() - since if since is not None else 0.0)

    def _claims(self, step) -> list[str]:
        """What the scenario says the step should show: its expectations' titles and pass texts."""
        out = []
        for e in self.scenario.expectations:
            if step.name is not None and e.target == step.name and e.kind == step.action:
                out.append(e.title + (f": {e.spec.pass_}" if getattr(e.spec, "pass_", None) else ""))
        return out

    def timeline(self, verb: str) -> dict:
        """``play``: the rest of the timeline at its ``at:`` times, on the scenario's clock from
        where it stands; ``pause``: the clock stops, no further step starts (what a played
        step started goes on)."""
        with self._lock:
            if verb == "pause":
                if self._running_since is None:
                    raise Conflict("the timeline is not playing")
                self.clock, self._running_since = self.now(), None
                self._pause.set()
            else:
                if self.verdict is not None or len(self.played) == len(self.scenario.steps):
                    raise Conflict("every step has been played")
                if self._running_since is not None:
                    raise Conflict("the timeline is already playing")
                self._pause = threading.Event()
                self._running_since = time.monotonic()
                self._player = threading.Thread(target=self._play, args=(self._pause,), daemon=True,
                                                name="scenario-timeline")
                self._player.start()
        self.publish({"type": "log", "text": f"scenario: timeline {'paused' if verb == 'pause' else 'playing'} "
                                             f"at {self.now():.1f} s"})
        self._announce()
        return {"playing": verb == "play", "clock": round(self.now(), 3)}

    def _play(self, pause: threading.Event) -> None:
        """Each remaining step when the scenario's clock reaches its ``at:``."""
        while not pause.is_set() and len(self.played) < len(self.scenario.steps):
            index = len(self.played)
            wait = self.scenario.steps[index].at - self.now()
            if wait > 0 and pause.wait(wait):
                return
            try:
                self.play_step(index, by_timeline=True)
            except LabError as exc:
                self.publish({"type": "log", "text": f"scenario: {exc}"})
                break
        with self._lock:
            if not pause.is_set() and self._running_since is not None:
                self.clock, self._running_since = self.now(), None
        self._announce()

    def play_step(self, index: int, by_timeline: bool = False) -> dict:
        if not by_timeline and self._running_since is not None:
            raise Conflict("the timeline is playing: pause it to play a step by hand")
        if self.verdict is not None:
            raise Conflict("the scenario has been played to its verdict; restart the server to play it again")
        if index != len(self.played) or index >= len(self.scenario.steps):
            raise Conflict(f"the next step to play is step {len(self.played)}")
        if self._busy:
            raise Conflict("a step is still being started")
        self._busy = True
        step = self.scenario.steps[index]
        run = self.runner
        seen = len(run.result.events)
        act = ACTIONS[step.action]
        if not by_timeline:
            self.clock = max(self.clock, step.at)      # the clock follows a step played by hand
        at = self.now()
        try:
            with self._lock:
                running = run.start_step(step)
        except LabError as exc:
            self._busy = False
            raise Conflict(f"step {index} ({act.describe(step)}): {exc}") from None
        if running is not None:
            self.pending.append(running)
        said = "; ".join(e.what for e in run.result.events[seen:] if _about(e, step)) or act.describe(step)
        self.played.append({"index": index, "said": said, "claims": self._claims(step),
                            "at": round(at, 3)})
        self._busy = False
        self._announce()
        if len(self.played) == len(self.scenario.steps):
            # the timeline has played its last step: its clock stops before the verdict can
            # come (a client must never see a verdict while the timeline still plays)
            with self._lock:
                if self._running_since is not None:
                    self.clock, self._running_since = self.now(), None
            threading.Thread(target=self._finish, daemon=True, name="scenario-verdict").start()
        elif running is not None:
            threading.Thread(target=self._follow, args=(running, index), daemon=True).start()
        return {"said": said}

    def _follow(self, running, index: int) -> None:
        """A step still in flight (a call, a probe): its end narrated when it comes."""
        while not running.done():
            time.sleep(0.05)
        with self._lock:
            if running not in self.pending:      # the verdict's ending took it
                return
            self.pending.remove(running)
            running.finish(self.runner)
        self._narrate(index)
        self._announce()

    def _finish(self) -> None:
        """After the last step: what is in flight finished, then the runner's own ending:
        TURN logs, captures stopped, firewall counters, diagnosis, expectations, report."""
        run = self.runner
        self.publish({"type": "log", "text": "scenario: last step played; waiting for what is in flight"})
        deadline = time.monotonic() + (self.scenario.duration or 90)
        while any(not p.done() for p in self.pending) and time.monotonic() < deadline:
            time.sleep(0.05)
        try:
            with self._lock:
                pending, self.pending = list(self.pending), []
                run.conclude(pending)
            for i in range(len(self.played)):
                self._narrate(i)
            result = run.judge()
            self.report_dir = write(result, self.out_dir)
            self.verdict = {"verdict": result.verdict, "report": True,
                            "expectations": [{"ok": c.status == "pass", "text": f"{c.title}: {c.observed}"
                                              + (f" ({c.meaning})" if c.meaning else "")} for c in result.checks]}
        except LabError as exc:
            self.verdict = {"verdict": "error", "report": False, "expectations": [{"ok": False, "text": str(exc)}]}
        self._announce()
        self.publish({"type": "log", "text": f"scenario verdict: {self.verdict['verdict']}"})

    def _narrate(self, index: int) -> None:
        """What the step did, from the runner's events about it so far."""
        step = self.scenario.steps[index]
        said = [e.what for e in sorted(self.runner.result.events, key=lambda e: e.t) if _about(e, step)]
        if said:
            self.played[index]["said"] = "; ".join(said)

    def _announce(self) -> None:
        self.publish({"type": "scenario", "scenario": self.scenario_info()})

    def report(self) -> Path:
        if self.report_dir is None:
            return super().report()
        return self.report_dir / "report.html"

    def stop(self) -> None:
        self._pause.set()
        for p in self.pending:
            kill = getattr(p, "kill", None)
            if kill:
                kill()
        for c in self.runner.warm.values():         # calls the trainer never played
            c.kill()
        if self.runner.captures:
            self.runner.captures.stop()
        super().stop()


def _about(event, step) -> bool:
    """An event of this step: the runner names its source after the step ("call:agent1")."""
    if event.source == "runner":
        return False
    what = event.source.split(":", 1)[-1]
    return step.name is None or what in (step.name, getattr(step.spec, "node", None))
