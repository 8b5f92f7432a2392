"""The scenario set `sudo make demo` runs: every broken network fails the way the field guide
says, every fixed one works. CI runs it here, so a regression in any layer shows up as a
scenario that no longer passes."""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SET = sorted((ROOT / "scenarios").glob("*.yaml"))


def test_every_claim_has_a_broken_and_a_fixed_scenario():
    from lab.scenario.load import load_scenario
    pairs: dict[str, set] = {}
    for f in SET:
        s = load_scenario(f)
        assert s.pair and s.variant and s.claim, f"{f.name}: pair, variant and claim are required in the set"
        pairs.setdefault(s.pair, set()).add(s.variant)
    assert pairs and all(v == {"broken", "fixed"} for v in pairs.values()), pairs


@pytest.mark.root
@pytest.mark.parametrize("backend", ["embedded", "coturn"])
def test_the_seed_set_passes_with_either_turn_backend(tmp_path, backend):
    r = subprocess.run([sys.executable, "-m", "lab.cli", "verify", "scenarios", "--parallel", "3",
                        "--turn-backend", backend, "--junit", str(tmp_path / "junit.xml"), "-o", str(tmp_path)],
                       capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
    assert f"{len(SET)} passed, 0 failed (TURN backend: {backend})" in r.stdout
    assert f'name="udp3478-open[{backend}]"' in (tmp_path / "junit.xml").read_text()
    # a failed call is explained from the captures, the firewall's counters and TURN's log
    blocked = json.loads((tmp_path / "udp3478-blocked" / "result.json").read_text())
    assert blocked["turn_backend"] == backend
    why = blocked["observations"]["call:agent1"]["diagnosis"]
    assert re.match(r"\d+ Allocate requests .*left agent1, \d+ reached fw, 0 reached turn: dropped inside fw; "
                    r"rule \d+ \(default drop, outbound\) dropped", why), why
    no_return = json.loads((tmp_path / "stateless-no-return" / "result.json").read_text())
    why = no_return["observations"]["call:agent1"]["diagnosis"]
    assert re.search(r"\d+ reached turn; \d+ answers left turn, .* 0 reached agent1: dropped inside fw; "
                     r"rule \d+ \(default drop, inbound\)", why), why
    # the topology picture marks the call's path and where its packets stopped
    assert "the call's packets stop here" in (tmp_path / "udp3478-blocked" / "topology.svg").read_text()
    if backend == "embedded":
        assert "TURN's log on turn: " in why and "Allocate (" in why
        assert "TURN transaction log" in (tmp_path / "stateless-no-return" / "report.md").read_text()
    else:
        assert "coturn keeps no transaction log" in why
