"""The process supervisor and the one deadline loop (lab/core/supervise.py)."""

import subprocess
import sys
import time

import pytest

from lab.core import supervise
from lab.core.errors import LabError
from lab.core.supervise import LineWatch, NotReady, ProcessExited, TimedOut, wait_ready, wait_until

PY = sys.executable


class FakeClock:
    def __init__(self):
        self.now = 100.0
        self.sleeps = []

    def __call__(self):
        return self.now

    def sleep(self, s):
        self.sleeps.append(s)
        self.now += s


def test_wait_until_returns_the_first_true_value():
    clock = FakeClock()
    answers = iter([None, 0, "yes"])
    assert wait_until(lambda: next(answers), 5, interval=0.5, clock=clock, sleep=clock.sleep) == "yes"
    assert clock.sleeps == [0.5, 0.5]


def test_wait_until_asks_once_more_at_the_deadline_then_says_what_did_not_happen():
    clock = FakeClock()
    asked = []
    with pytest.raises(TimedOut, match="the shaper answering did not happen within 1.2 s") as info:
        wait_until(lambda: asked.append(clock()), 1.2, interval=0.5, what="the shaper answering",
                   clock=clock, sleep=clock.sleep)
    assert isinstance(info.value, LabError)
    assert clock.sleeps == pytest.approx([0.5, 0.5, 0.2])      # the last wait is cut to the deadline
    assert asked == pytest.approx([100.0, 100.5, 101.0, 101.2])


def test_wait_until_asks_at_least_once_even_with_no_time():
    clock = FakeClock()
    assert wait_until(lambda: 1, 0, clock=clock, sleep=clock.sleep) == 1
    with pytest.raises(TimedOut):
        wait_until(lambda: 0, 0, clock=clock, sleep=clock.sleep)
    assert clock.sleeps == []


class FakeProc:
    """A Popen stand-in: runs until told it ended."""

    def __init__(self, pid, code=None):
        self.pid, self.code = pid, code

    def poll(self):
        return self.code


def test_wait_ready_on_a_fake_clock_with_a_timeout_per_process(tmp_path):
    clock = FakeClock()
    log = tmp_path / "b.log"
    log.write_text("starting\nstill starting\n")
    a = supervise.Process(FakeProc(1), "service 'a'")
    b = supervise.Process(FakeProc(2), "service 'b'", log)
    ready = {1: lambda: clock() >= 101.0, 2: lambda: False}
    with pytest.raises(NotReady) as info:
        wait_ready([a, b], lambda p: ready[p.pid](), 10, interval=0.25, timeouts={2: 3.0},
                   clock=clock, sleep=clock.sleep)
    assert clock() == pytest.approx(103.0) and info.value.process is b
    assert str(info.value) == "service 'b' was not ready within 3 s:\n  | starting\n  | still starting"


def test_wait_ready_stops_at_a_process_that_ended_with_its_log(tmp_path):
    clock = FakeClock()
    log = tmp_path / "a.log"
    log.write_text("port 3478 in use\n")
    p = supervise.Process(FakeProc(1, code=2), "service 'turn' on turn", log)
    with pytest.raises(ProcessExited) as info:
        wait_ready([p], lambda p: True, 10, clock=clock, sleep=clock.sleep)
    assert str(info.value) == "service 'turn' on turn exited with status 2:\n  | port 3478 in use"


def test_a_real_process_started_into_its_log_then_stopped(tmp_path):
    log = tmp_path / "p.log"
    p = supervise.start([PY, "-c", "import time; print('up', flush=True); time.sleep(30)"], name="sleeper", log=log)
    p.wait_ready(lambda: "up" in supervise.read_text(log), timeout=10)
    assert p.alive()
    p.stop()
    assert p.returncode is not None


def test_a_process_that_dies_before_it_is_ready_is_an_error_quoting_its_log(tmp_path):
    log = tmp_path / "p.log"
    p = supervise.start([PY, "-c", "import sys; print('bad option', flush=True); sys.exit(3)"], name="thing",
                        log=log, popen=subprocess.Popen)
    t0 = time.monotonic()
    with pytest.raises(ProcessExited, match=r"thing exited with status 3:\n  \| bad option"):
        p.wait_ready(lambda: False, timeout=10)
    assert time.monotonic() - t0 < 5


def test_stop_kills_what_ignores_sigterm(tmp_path):
    p = supervise.start([PY, "-c", "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
                         "print('ok', flush=True); time.sleep(30)"], name="stubborn", log=tmp_path / "s.log")
    supervise.wait_until(lambda: "ok" in supervise.read_text(tmp_path / "s.log"), 10)
    t0 = time.monotonic()
    supervise.stop([p], grace=0.3)
    assert p.returncode == -9 and time.monotonic() - t0 < 3


def test_the_caller_gives_the_popen_and_its_arguments(tmp_path):
    seen = {}

    def popen(argv, **kw):
        seen.update(kw, argv=argv)
        return subprocess.Popen(argv, **kw)
    p = supervise.start([PY, "-c", "print('hi')"], name="x", popen=popen, stdout=subprocess.PIPE, cwd=str(tmp_path))
    assert p.proc.communicate(timeout=10)[0] == b"hi\n"
    assert seen["stdin"] == subprocess.DEVNULL and seen["cwd"] == str(tmp_path) and seen["argv"][0] == PY


def test_a_line_watch_sees_a_ready_line_on_a_pipe_without_blocking():
    p = subprocess.Popen([PY, "-c", "import time; print('loading', flush=True); time.sleep(0.3); "
                          "print('listening on 1234', flush=True); time.sleep(30)"], stdout=subprocess.PIPE)
    try:
        said = LineWatch(p.stdout, "listening on")
        t0 = time.monotonic()
        assert not said()                     # returns at once, nothing or only 'loading' yet
        assert time.monotonic() - t0 < 0.2
        wait_until(said, 10, interval=0.02)
        assert said.seen == "loading\nlistening on 1234\n"
    finally:
        p.kill()
        p.wait()
