"""The ``probe-endpoint`` action and ``endpoint:`` expectations: checked at load like every
action (no lab), and run inside a lab's agents (root)."""

from pathlib import Path

import pytest

from lab.core.errors import InputError
from lab.scenario.load import load_scenario

HERE = Path(__file__).resolve().parent
SCENARIO = HERE / "probe-endpoint.yaml"


def test_loads_with_typed_steps():
    s = load_scenario(SCENARIO)
    steps = [st for st in s.steps if st.action == "probe-endpoint"]
    assert [st.name for st in steps] == ["windows", "agent2-endpoint"]
    assert steps[1].spec.os == "linux" and steps[1].spec.requests == 2
    assert [e.kind for e in s.expectations] == ["endpoint", "endpoint"]


@pytest.mark.parametrize("old, new, message", [
    ("findings: [udp3478-blocked]", "findings: [udp-blocked]", "udp3478-blocked"),
    ("from: agent1}", "from: agent9}", "unknown host 'agent9'"),
    ("endpoint: windows", "endpoint: linux", "no endpoint named 'linux'"),
    ("os: linux", "os: beos", "windows"),
    ("requests: 2", "requests: 50", "10"),
])
def test_bad_steps_and_expectations_are_refused_at_load(tmp_path, old, new, message):
    text = SCENARIO.read_text()
    assert old in text
    p = HERE / f"_bad-{tmp_path.name}.yaml"          # beside the original: its topology path is relative
    p.write_text(text.replace(old, new))
    try:
        with pytest.raises(InputError) as e:
            load_scenario(p)
    finally:
        p.unlink()
    assert message in str(e.value), str(e.value)


@pytest.mark.root
def test_runs_in_the_agents_and_checks_findings(tmp_path):
    from lab.scenario.runner import run_scenario
    r = run_scenario(load_scenario(SCENARIO, lab_name="pe-action"))
    assert r.verdict == "pass", [c.to_dict() for c in r.checks]
    obs = r.observations["endpoint:windows"]
    assert obs["problems"] == ["udp3478-blocked"] and obs["exit_status"] == 1
    assert obs["measurements"]["os"] == "windows" and obs["measurements"]["source_ports"][0] == 49152
    linux = r.observations["endpoint:agent2-endpoint"]
    assert linux["measurements"]["os"] == "linux" and linux["measurements"]["stun"]["sent"] == 14
