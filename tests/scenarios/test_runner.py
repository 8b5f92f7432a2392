"""Scenarios run for real: a lab is built, probes cross it, verdicts come from what was seen."""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from lab.scenario.expect import evaluate
from lab.scenario.load import load_scenario
from lab.report.scenario import write as write_report
from lab.scenario.runner import run_scenario

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.root
def test_probes_tell_reached_from_not_reached(tmp_path):
    s = load_scenario(ROOT / "tests/scenarios/probes.yaml")
    r = run_scenario(s)
    assert r.verdict == "pass", [c.to_dict() for c in r.checks]
    o = r.observations
    assert o["probe:agent-turn"]["sent"] == 5 and o["probe:agent-turn"]["replies"] == 5
    assert o["probe:agent-turn"]["requests_received"] == 5
    # the lab's TURN server answers the STUN probe; the captures count what arrived
    assert o["probe:agent-turn"]["answered_by"] == "turn on turn, udp 3478"
    # where the lab's own responder answers, it says whom it saw
    assert o["probe:agent-stun"]["seen_from"] == [o["probe:agent-stun"]["local"].replace("0.0.0.0", "10.10.0.2")]
    assert o["probe:printer-turn"]["replies"] == 0 and o["probe:printer-turn"]["requests_received"] == 0
    assert "Network is unreachable" in o["probe:printer-turn"]["errors"][0]
    assert o["probe:agent-sig"]["proto"] == "tcp" and o["probe:agent-sig"]["replies"] == 3
    assert o["probe:agent-stun"]["replies"] == 3 and o["probe:agent-stun"]["requests_received"] == 3
    assert o["probe:agent-stun"]["requests_where"] == "all 3 requests reached media"
    # the later step starts later on the timeline
    starts = {e.what: e.t for e in r.events if e.source == "runner"}
    assert starts["probe kiosk-office"] >= 0.2
    d = write_report(r, tmp_path)
    data = json.loads((d / "result.json").read_text())
    assert data["verdict"] == "pass" and len(data["checks"]) == 5
    assert "The agent reaches the TURN port" in (d / "report.md").read_text()
    assert (d / "topology.svg").stat().st_size > 1000


@pytest.mark.root
def test_verify_fails_a_scenario_whose_expectations_do_not_hold_and_writes_junit(tmp_path):
    r = subprocess.run([sys.executable, "-m", "lab.cli", "verify", "tests/scenarios", "-k", "inverted",
                        "--junit", str(tmp_path / "junit.xml"), "-o", str(tmp_path)],
                       capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "0 passed, 1 failed" in r.stdout
    xml = (tmp_path / "junit.xml").read_text()
    assert 'tests="1" failures="1"' in xml
    assert "The agent reaches the TURN port after all." in xml
    result = json.loads((tmp_path / "inverted" / "result.json").read_text())
    assert [c["status"] for c in result["checks"]] == ["fail", "pass", "fail"]


def test_an_expectation_without_observations_is_an_error_never_a_pass():
    s = load_scenario(ROOT / "tests/scenarios/probes.yaml")
    checks = evaluate(s, {})
    assert {c.status for c in checks} == {"error"}
    checks = evaluate(s, {"probe:agent-turn": {"error": "the probe did not finish in time"}})
    assert checks[0].status == "error" and "did not finish" in checks[0].observed


@pytest.mark.root
def test_a_dropped_return_path_is_found_inside_the_router_that_drops_it(tmp_path):
    s = load_scenario(ROOT / "tests/scenarios/return-path.yaml")
    r = run_scenario(s, out_dir=tmp_path)
    assert r.verdict == "pass", [c.to_dict() for c in r.checks]
    o = r.observations["probe:stun"]
    assert o["requests_received"] == 4 and o["replies"] == 0
    assert o["requests_where"] == "all 4 requests reached turn"
    assert "dropped inside isp" in o["replies_where"], o["replies_where"]
    counts = {p["at"]: p["count"] for p in o["replies_path"]}
    assert counts["turn:eth0"] == 4 and counts["isp:eth1"] == 4 and counts["isp:eth0"] == 0
    assert (tmp_path / "return-path" / "pcap" / "isp-eth1.pcap").stat().st_size > 24


@pytest.mark.root
def test_verify_in_parallel_runs_labs_of_one_topology_side_by_side(tmp_path):
    r = subprocess.run([sys.executable, "-m", "lab.cli", "verify", "tests/scenarios", "--parallel", "3",
                        "--junit", str(tmp_path / "junit.xml"), "-o", ""],
                       capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "6 passed, 1 failed" in r.stdout
    labs = [line.rsplit("lab ", 1)[1].rstrip(")") for line in r.stderr.splitlines() if ", lab " in line]
    assert len(labs) == 7 and all(re.fullmatch(r"(unroute|office|office-fw)-p[012]", name) for name in labs), labs
    assert 'tests="7" failures="1" errors="0"' in (tmp_path / "junit.xml").read_text()
