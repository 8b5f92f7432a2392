"""A scenario set interrupted mid-call leaves nothing behind: labs, captures, the TURN server,
the cloud and the softphone processes all end (the autouse fixture checks the host)."""

import os
import signal
import subprocess
import sys
import time

import pytest

pytestmark = pytest.mark.root


@pytest.mark.parametrize("sig,argv", [
    (signal.SIGTERM, ["verify", "scenarios", "-k", "udp3478", "--parallel", "2"]),
    (signal.SIGINT, ["run", "scenarios/udp3478-blocked.yaml"]),
])
def test_interrupted_mid_call_leaves_nothing(repo, tmp_path, sig, argv):
    p = subprocess.Popen([sys.executable, "-m", "lab.cli", *argv, "-o", str(tmp_path)], cwd=repo,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    # wait until a softphone process runs, then interrupt mid-call
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        ps = subprocess.run(["pgrep", "-f", "-a", "python -m lab.agent"], capture_output=True, text=True).stdout
        if ps.strip():
            break
        assert p.poll() is None, p.communicate()
        time.sleep(0.1)
    else:
        pytest.fail("no softphone started within 30 s")
    # softphones start while the lab's services start, then wait for their step: give the
    # lab time to come up and the call (8 s until it fails) time to be gathering
    time.sleep(3.5)
    assert p.poll() is None, "the run ended before it could be interrupted mid-call"
    # signal the whole group, as a terminal's Ctrl-C or a CI runner's timeout does
    os.killpg(p.pid, sig)
    out, errs = p.communicate(timeout=60)
    assert p.returncode != 0, out
    assert "Traceback" not in errs, errs[-2000:]
    # beyond the host check of the autouse fixture (namespaces, lab shells, run files): no
    # process of these labs (they all run from files in the lab's run directory) lives on
    from lab.net.state import run_dir
    left = subprocess.run(["pgrep", "-a", "-f", str(run_dir())], capture_output=True, text=True).stdout
    assert not left.strip(), left
