"""Scenario mode without a lab: the trainer's play/pause of the timeline (steps at their at:
times on the scenario's clock, which stands still while paused), steps played by hand, the
narration and the verdict after the last step; and serve driving the scenario runner through
its public pieces only (no private call across the layers)."""

from __future__ import annotations

import ast
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from starlette.testclient import TestClient

import lab.serve.scenario as serve_scenario
from lab.core.errors import LabError
from lab.scenario.runner import Runner
from lab.serve.app import create_app
from lab.serve.live import Conflict
from lab.serve.scenario import ScenarioLab

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "t0ken"


class Mark:
    """An action that only says it ran (the registry's interface: describe, start)."""

    @staticmethod
    def describe(step):
        return f"mark {step.name}"


class FakeRunner:
    """The runner's public pieces serve uses, recording when each step started."""

    def __init__(self):
        self.result = SimpleNamespace(events=[])
        self.started: list[tuple[str, float]] = []
        self.warm, self.captures = {}, None
        self.concluded = threading.Event()

    def event(self, source, what):
        self.result.events.append(SimpleNamespace(t=time.monotonic(), source=source, what=what))

    def start_step(self, step):
        self.started.append((step.name, time.monotonic()))
        self.event(f"mark:{step.name}", f"{step.name} done")
        return None

    def conclude(self, pending):
        self.concluded.set()

    def judge(self):
        raise LabError("no lab to judge")        # the verdict's error path: no report written


def scenario(*ats):
    steps = [SimpleNamespace(at=at, action="mark", name=f"s{i}", spec=None) for i, at in enumerate(ats)]
    return SimpleNamespace(name="fake", title="Fake", claim="a claim", variant="broken", steps=steps,
                           expectations=[], duration=None)


@pytest.fixture
def make(monkeypatch, tmp_path):
    monkeypatch.setattr(serve_scenario, "ACTIONS", {"mark": Mark})
    made = []

    def make(*ats):
        events = []
        network = SimpleNamespace(topo=SimpleNamespace(name="fake", nodes={}, links=[], hosts=lambda: []))
        s = ScenarioLab(network, events.append, scenario(*ats), FakeRunner(), tmp_path)
        s.events = events
        made.append(s)
        return s
    yield make
    for s in made:
        s._pause.set()


def wait_for(cond, timeout=5.0):
    end = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < end, "timed out"
        time.sleep(0.01)


def test_play_runs_the_rest_at_the_at_times(make):
    s = make(0.0, 0.3, 0.6)
    t0 = time.monotonic()
    assert s.timeline("play")["playing"]
    wait_for(lambda: s.verdict is not None)
    starts = [t - t0 for _, t in s.runner.started]
    assert [n for n, _ in s.runner.started] == ["s0", "s1", "s2"]
    for got, want in zip(starts, (0.0, 0.3, 0.6)):
        assert want <= got < want + 0.15, starts
    assert [p["said"] for p in s.played] == ["s0 done", "s1 done", "s2 done"]     # each step narrated
    assert s.verdict["verdict"] == "error" and "no lab to judge" in s.verdict["expectations"][0]["text"]
    assert s.runner.concluded.is_set()
    info = s.scenario_info()
    assert info["playing"] is False and 0.6 <= info["clock"] < 0.8
    assert any(e["type"] == "scenario" and e["scenario"]["verdict"] for e in s.events)


def test_pause_stops_the_clock_and_play_goes_on_from_there(make):
    s = make(0.0, 0.4, 0.8)
    s.timeline("play")
    wait_for(lambda: len(s.played) == 1)
    time.sleep(0.2)
    s.timeline("pause")
    paused_at = s.now()
    assert 0.15 < paused_at < 0.4 and not s.scenario_info()["playing"]
    with pytest.raises(Conflict, match="not playing"):
        s.timeline("pause")
    time.sleep(0.5)                                   # longer than the next step's gap: nothing starts
    assert len(s.played) == 1 and s.now() == paused_at
    t = time.monotonic()
    s.timeline("play")
    with pytest.raises(Conflict, match="already playing"):
        s.timeline("play")
    with pytest.raises(Conflict, match="pause it to play a step by hand"):
        s.play_step(1)
    wait_for(lambda: len(s.played) == 2)
    took = s.runner.started[1][1] - t
    assert 0.4 - paused_at - 0.02 <= took < 0.4 - paused_at + 0.15, took     # only what was left of the gap
    wait_for(lambda: s.verdict is not None)
    with pytest.raises(Conflict, match="every step has been played"):
        s.timeline("play")


def test_a_step_by_hand_moves_the_clock_to_its_time(make):
    s = make(0.0, 1.0, 1.3)
    s.play_step(0)
    s.play_step(1)
    assert s.now() == 1.0
    t = time.monotonic()
    s.timeline("play")                               # the rest: step 2, 0.3 s on
    wait_for(lambda: s.verdict is not None)
    assert 0.28 <= s.runner.started[2][1] - t < 0.45
    with pytest.raises(Conflict):
        s.play_step(2)


def test_the_timeline_through_the_api(make):
    s = make(0.0, 0.2)
    s.topology = lambda: {"scenario": s.scenario_info()}     # no picture to lay out in a fake lab
    with TestClient(create_app(s, TOKEN, tick=10)) as c:
        auth = {"X-Icelab-Token": TOKEN}
        assert c.post("/api/scenario/timeline", json={"verb": "play"}).status_code == 403
        r = c.post("/api/scenario/timeline", json={"verb": "play"}, headers=auth)
        assert r.status_code == 200 and r.json()["playing"] is True
        assert c.post("/api/scenario/timeline", json={"verb": "play"}, headers=auth).status_code == 409
        assert c.post("/api/scenario/play", json={"step": 1}, headers=auth).status_code == 409
        wait_for(lambda: s.verdict is not None)
        info = c.get("/api/topology", headers=auth).json()["scenario"]
        assert [p["index"] for p in info["played"]] == [0, 1] and info["verdict"]["verdict"] == "error"
        assert c.post("/api/scenario/timeline", json={"verb": "pause"}, headers=auth).status_code == 409


def private_uses(path: Path) -> list[str]:
    """``x._name`` where x is not self/cls/super(): another object's private member."""
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__"):
            v = node.value
            if isinstance(v, ast.Name) and v.id in ("self", "cls"):
                continue
            if isinstance(v, ast.Call) and isinstance(v.func, ast.Name) and v.func.id == "super":
                continue
            out.append(f"{path.relative_to(ROOT)}:{node.lineno}: {ast.unparse(node)}")
    return out


def test_serve_uses_no_private_member_of_another_object():
    """lab/serve drives the scenario runner (and everything else of the lab) through public
    names only: a private one may change under it without notice."""
    found = [u for p in sorted((ROOT / "lab" / "serve").glob("*.py")) for u in private_uses(p)]
    assert found == []


def test_the_runner_has_what_serve_calls():
    for name in ("plan", "before_services", "begin", "start_step", "conclude", "judge", "event"):
        assert callable(getattr(Runner, name)), name
