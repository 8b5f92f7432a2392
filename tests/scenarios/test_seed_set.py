"""The scenario set `sudo make demo` runs: every broken network fails the way the field guide
says, every fixed one works. CI runs it here, so a regression in any layer shows up as a
scenario that no longer passes."""

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
def test_the_seed_set_passes(tmp_path):
    r = subprocess.run([sys.executable, "-m", "lab.cli", "verify", "scenarios", "--parallel", "2",
                        "--junit", str(tmp_path / "junit.xml"), "-o", str(tmp_path)],
                       capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
    assert f"{len(SET)} passed, 0 failed" in r.stdout
