"""A ``link`` step takes effect within 50 ms of its time (issue 14 item 6): before, the first
change in a lab started the shaper and came 0.75-1.2 s late."""

from pathlib import Path

import pytest

from lab.scenario.actions.link import LinkAction
from lab.scenario.load import load_scenario
from lab.scenario.runner import run_scenario

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.root
def test_the_first_link_change_is_on_time(tmp_path):
    r = run_scenario(load_scenario(ROOT / "tests/scenarios/engine/link-on-time.yaml"), out_dir=tmp_path)
    assert r.verdict == "pass", (r.error, [c.to_dict() for c in r.checks])
    applied = [e for e in r.events if e.source == "link:edge-isp"]
    assert len(applied) == 1 and 2.0 <= applied[0].t < 2.0 + LinkAction.LATE, applied
    assert "took effect" not in applied[0].what
