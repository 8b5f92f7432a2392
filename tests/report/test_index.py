"""The set's summary page and CSV, from results (no lab needed)."""

import csv
from pathlib import Path

from lab.report.index import write_index
from lab.scenario.expect import Check
from lab.scenario.load import load_scenario
from lab.scenario.runner import Result

ROOT = Path(__file__).resolve().parents[2]


def test_pairs_side_by_side_and_a_csv_row_per_scenario(tmp_path):
    broken = load_scenario(ROOT / "scenarios/udp3478-blocked.yaml")
    fixed = load_scenario(ROOT / "scenarios/udp3478-open.yaml")
    results = [
        Result(fixed, "office", "fail", [Check("probe stun: reached", "fail", "5 sent, 0 replies back", "UDP dies")],
               timings={"build": 0.7, "total": 3.2}),
        Result(broken, "office", "pass", [Check("probe stun: reached", "pass", "5 sent, 0 arrived", None)],
               timings={"build": 0.7, "total": 3.0}),
    ]
    page = write_index(results, tmp_path).read_text()
    assert "1 of 2 scenarios pass" in page
    # one row for the pair, broken first, each linking its report
    row = page[page.index("<td><b>udp3478</b>"):]
    assert row.index("udp3478-blocked/report.html") < row.index("udp3478-open/report.html")
    with open(tmp_path / "summary.csv") as f:
        got = list(csv.DictReader(f))
    assert [(r["scenario"], r["variant"], r["verdict"]) for r in got] == [
        ("udp3478-blocked", "broken", "pass"), ("udp3478-open", "fixed", "fail")]
    assert got[1]["first_problem"] == "probe stun: reached: 5 sent, 0 replies back"
    assert got[1]["checks_passed"] == "0" and got[1]["checks"] == "1"


def test_a_pair_with_two_broken_scenarios_shows_both(tmp_path):
    names = ["vdi-in-desktop-udp3478-blocked", "vdi-redirect-unavailable", "vdi-redirected-home"]
    results = [Result(load_scenario(ROOT / f"scenarios/{n}.yaml"), "vdidesk", "pass", [], timings={"total": 9.0})
               for n in names]
    page = write_index(results, tmp_path).read_text()
    row = page[page.index("<td><b>vdi-redirect</b>"):]
    row = row[:row.index("</tr>")]
    assert all(f"{n}/report.html" in row for n in names), row
    assert "3 of 3 scenarios pass" in page
