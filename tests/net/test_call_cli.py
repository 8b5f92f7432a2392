"""`icelab call` on a lab that is up: the softphone calls through the lab's own cloud."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

pytestmark = pytest.mark.root


def test_icelab_call_places_a_call_on_a_running_lab(repo):
    up = subprocess.Popen([sys.executable, "-m", "lab.cli", "up", "topologies/agent-lan.yaml", "--name", "calltest"],
                          cwd=repo, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            st = subprocess.run([sys.executable, "-m", "lab.cli", "status", "--json"], cwd=repo,
                                capture_output=True, text=True)
            if any(s["name"] == "calltest" and s["status"] == "running" for s in json.loads(st.stdout or "[]")):
                break
            assert up.poll() is None, up.communicate()
            time.sleep(0.2)
        r = subprocess.run([sys.executable, "-m", "lab.cli", "call", "calltest", "agent1", "--talk", "1", "--json"],
                           cwd=repo, capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
        outcome = json.loads(r.stdout.strip().splitlines()[-1])["outcome"]
        assert outcome["reached_talking"] and not outcome["quality"]["silent_audio"]
        r = subprocess.run([sys.executable, "-m", "lab.cli", "call", "calltest", "agent9"], cwd=repo,
                           capture_output=True, text=True, timeout=30)
        assert r.returncode == 2 and "has no node 'agent9'" in r.stderr and "did you mean" in r.stderr
    finally:
        up.send_signal(signal.SIGINT)
        up.wait(timeout=30)
