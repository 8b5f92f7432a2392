"""procs.kill_all: SIGTERM first, SIGKILL for what ignores it, and nothing left either way."""

import subprocess
import time

from lab.net import procs


def test_kill_all_ends_polite_and_stubborn_processes():
    polite = subprocess.Popen(["sleep", "30"])
    stubborn = subprocess.Popen(["bash", "-c", "trap '' TERM; while :; do sleep 0.05; done"])
    time.sleep(0.2)              # let bash install its trap
    t0 = time.monotonic()
    left = procs.kill_all([polite.pid, stubborn.pid], grace=0.3)
    took = time.monotonic() - t0
    assert left == []
    assert polite.wait(timeout=2) == -15           # SIGTERM was enough
    assert stubborn.wait(timeout=2) == -9          # it ignored SIGTERM: SIGKILL after the grace
    assert 0.3 <= took < 2.5


def test_kill_all_of_nothing_alive_returns_at_once():
    gone = subprocess.Popen(["true"])
    gone.wait()
    t0 = time.monotonic()
    assert procs.kill_all([gone.pid]) == []
    assert time.monotonic() - t0 < 0.3
