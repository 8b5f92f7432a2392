"""The runner's waits (the far end's hang-up line, the time until the next step) on a fake
clock: their logic without their seconds. lab.core.supervise.wait_until does the waiting."""

from pathlib import Path
from types import SimpleNamespace

import pytest

from lab.scenario.load import load_scenario
from lab.scenario.runner import Runner

ROOT = Path(__file__).resolve().parents[2]


class Clock:
    def __init__(self):
        self.now, self.slept = 100.0, []

    def __call__(self) -> float:
        return self.now

    def sleep(self, s: float) -> None:
        self.slept.append(s)
        self.now += s


def runner(clock: Clock, log: Path) -> Runner:
    r = Runner(load_scenario(ROOT / "tests/scenarios/probes.yaml"), clock=clock, sleep=clock.sleep)
    r.network = SimpleNamespace(services=[SimpleNamespace(service="signalling", log_path=log)])
    return r


def test_far_end_waits_for_the_hangup_line_then_gives_up_on_the_clock(tmp_path):
    clock = Clock()
    log = tmp_path / "signalling.log"
    assert runner(clock, log).far_end("c1", wait=3.0) is None
    assert clock.now == pytest.approx(103.0) and sum(clock.slept) == pytest.approx(3.0)


def test_far_end_reads_the_line_that_came_while_it_waited(tmp_path):
    clock = Clock()
    log = tmp_path / "signalling.log"
    r = runner(clock, log)

    def sleep(s):
        Clock.sleep(clock, s)
        if clock.now >= 101.0 and not log.exists():
            log.write_text('{"event": "hangup", "callId": "c1", "heard_hz": 440, "packets_received": 9}\n')
    r.sleep = sleep
    got = r.far_end("c1", wait=3.0)
    assert got == {"heard_hz": 440, "heard_dbfs": None, "packets_received": 9, "packets_lost": None}
    assert 101.0 <= clock.now < 101.1


def test_poll_finishes_what_is_done_and_returns_at_the_step_time(tmp_path):
    clock = Clock()
    r = runner(clock, tmp_path / "log")
    finished = []
    done_at = 100.5

    class Probe:
        def done(self):
            return clock.now >= done_at

        def finish(self, run):
            finished.append(clock.now)
    pending = [Probe()]
    r._poll(pending, until=102.0)
    assert pending == [] and len(finished) == 1 and 100.5 <= finished[0] < 100.52
    assert clock.now == 102.0
