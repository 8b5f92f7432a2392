"""Timeline actions on a running lab: TURN stopped, started, restarted, given faults; firewall
rules deleted and added on the live table (lab/scenario/actions/rule.py)."""

from pathlib import Path

import pytest

from lab.scenario.load import load_scenario
from lab.scenario.runner import run_scenario

ROOT = Path(__file__).resolve().parents[2]
ENGINE = ROOT / "tests/scenarios/engine"


def _events(r, source):
    return [e.what for e in r.events if e.source == source]


@pytest.mark.root
@pytest.mark.parametrize("backend", ["embedded", "coturn"])
def test_turn_stops_and_starts_again_with_either_backend(backend):
    r = run_scenario(load_scenario(ENGINE / "turn-stop-start.yaml", turn_backend=backend))
    assert r.verdict == "pass", (r.error, [c.to_dict() for c in r.checks])
    assert r.turn_backend == backend
    said = _events(r, "turn:turn")
    assert said[0].startswith("stopped") and said[1].startswith("started")
    # embedded: in place through the control socket; coturn: its process again
    assert ("coturn restarted" in said[2]) == (backend == "coturn"), said


@pytest.mark.root
def test_turn_faults_set_live_through_the_control_socket():
    r = run_scenario(load_scenario(ENGINE / "turn-faults.yaml"))
    assert r.verdict == "pass", (r.error, [c.to_dict() for c in r.checks])
    assert _events(r, "turn:turn")[:2] == ["faults now drop", "faults now none"]


@pytest.mark.root
def test_rules_deleted_and_added_on_the_live_firewall_keep_the_other_counters(tmp_path):
    r = run_scenario(load_scenario(ENGINE / "rule-live.yaml"), out_dir=tmp_path)
    assert r.verdict == "pass", (r.error, [c.to_dict() for c in r.checks])
    # stateful: a flow's first packet meets the rule, the rest are established
    assert _events(r, "rule:fw") == ["deleted rule 6 (softphone: TURN UDP 3478 out) after it counted 1 packets",
                                     "added rule 11 (turn back, outbound accept)"]
    rules = {x["number"]: x for x in r.observations["firewall:fw"]["rules"]}
    assert rules[6]["packets"] == 1 and "deleted_at" in rules[6]      # its last counter, kept
    assert rules[11]["packets"] == 1 and "added_at" in rules[11]
    assert rules[1]["packets"] >= 2                                   # established, kept across the changes
    assert rules[9]["packets"] == 3     # default drop, outbound: every packet of the middle probe (none is established)
    o = r.observations["probe:deleted"]
    assert "dropped inside fw; rule 9 (default drop, outbound) dropped 3 packets" in o["requests_where"], o


@pytest.mark.root
def test_a_call_failed_by_a_turn_fault_is_explained_by_turns_log(tmp_path):
    r = run_scenario(load_scenario(ENGINE / "turn-allocate-error.yaml"), out_dir=tmp_path)
    assert r.verdict == "pass", (r.error, [c.to_dict() for c in r.checks])
    o = r.observations["call:agent1"]
    assert "0 reached" not in o["diagnosis"] and "reached turn; " in o["diagnosis"], o["diagnosis"]
    assert "error 508" in o["diagnosis"], o["diagnosis"]
    assert any(row["code"] == 508 for row in o["transactions"]["turn_log"])
    assert (tmp_path / "turn-allocate-error" / "turn-turn.transactions.jsonl").exists()


def test_verify_refuses_faults_on_coturn_before_building_anything():
    import subprocess
    import sys
    r = subprocess.run([sys.executable, "-m", "lab.cli", "verify", "tests/scenarios/engine", "-k", "turn-faults",
                        "--turn-backend", "coturn", "-o", ""], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert r.returncode == 2, r.stdout + r.stderr
    assert "needs the embedded TURN backend" in r.stderr and "(--turn-backend coturn)" in r.stderr
