"""The lab against the real thing: Amazon's connect-rtc-js in headless Chromium places calls
through the lab's cloud beside the emulated softphone (tests/scenarios/browser/), and both
end the same way at the same moment. Chromium is optional (`make setup` installs it)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from lab.agent.browser import chromium

pytestmark = [pytest.mark.root,
              pytest.mark.skipif(chromium() is None, reason="Chromium (optional; 'sudo make setup' installs it) is absent")]

ROOT = Path(__file__).resolve().parents[2]


def test_real_library_and_emulation_agree(tmp_path):
    r = subprocess.run([sys.executable, "-m", "lab.cli", "verify", "tests/scenarios/browser", "--parallel", "2",
                        "-o", str(tmp_path)], cwd=ROOT, capture_output=True, text=True, timeout=240)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]

    def calls(name):
        obs = json.loads((tmp_path / name / "result.json").read_text())["observations"]
        return obs["call:emulated"], obs["call:chromium"], obs

    emulated, real, _ = calls("browser-open")
    assert real["engine"] == "chromium" and "HeadlessChrome" in real["user_agent"]
    # the real library's own state names, in the emulation's order
    ours = [e["name"] for e in emulated["timeline"] if e["kind"] == "state"]
    theirs = [e["name"] for e in real["timeline"] if e["kind"] == "state"]
    assert [s for s in theirs if s in ours][:len(ours) - 1] == ours[:-1], (ours, theirs)
    assert real["quality"]["packets_received"] > 50 and real["quality"]["packets_lost"] == 0, real["quality"]
    assert real["quality"]["relay_protocol"] == "udp" and real["quality"]["local_type"] == "relay"

    emulated, real, obs = calls("browser-udp3478-blocked")
    assert abs(emulated["times"]["error"] - real["times"]["error"]) < 0.1, (emulated["times"], real["times"])
    assert real["local_candidates"] == 0
    # the browser's only traffic is the call's: nothing but TURN's UDP 3478 dies at the firewall
    refused = [p for rule in obs["firewall:fw"]["rules"] for p in rule["refused"]]
    assert refused and {(p["proto"], p["port"]) for p in refused} == {("udp", 3478)}, refused
