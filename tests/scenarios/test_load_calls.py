"""Load runs (a call step with 'count'): checked at load with file/line problems, counted by
'calls:' expectations; and the NAT resource that ran out, from conntrack statistics."""

import time
from pathlib import Path

import pytest

from lab.core.errors import InputError
from lab.scenario.actions.load import call_record, count_bound, load_calls, tally
from lab.scenario.exhaustion import exhausted, sentence
from lab.scenario.expect import evaluate
from lab.scenario.load import load_scenario
from lab.scenario.runner import run_scenario

ROOT = Path(__file__).resolve().parents[2]
CC = ROOT / "topologies/contact-centre.yaml"


def _scenario(tmp_path, steps: str, expects: str):
    f = tmp_path / "load.yaml"
    f.write_text(f"name: load\ntopology: {CC}\ntimeline:\n{steps}\nexpect:\n{expects}\n")
    return load_scenario(f)


def test_a_load_step_takes_a_group_a_lan_or_a_host_and_is_light_by_default(tmp_path):
    s = _scenario(tmp_path, "  - {at: 0s, call: {name: a, from: floor2-linux, count: 25, over: 5s}}\n"
                            "  - {at: 0s, call: {name: b, from: floor1, count: 3}}\n"
                            "  - {at: 0s, call: {name: c, from: f3-w007, count: 1, media: full}}",
                  "  - {calls: a, talking: '>= 99%'}\n  - {calls: b, every_failure: ice_collection_timeout}\n"
                  "  - {calls: c, audio: 1}")
    a, b, c = s.steps
    assert a.spec.over == 5.0 and a.spec.media is None
    assert load_calls(s.topology, a)[0] == ("a-f2-l001", "f2-l001") and len(load_calls(s.topology, a)) == 25
    assert [m for _, m in load_calls(s.topology, b)] == ["f1-l001", "f1-l002", "f1-l003"]
    assert load_calls(s.topology, c) == [("c-f3-w007", "f3-w007")] and c.spec.media == "full"


def test_load_problems_are_reported_at_their_line(tmp_path):
    with pytest.raises(InputError) as exc:
        _scenario(tmp_path, "  - {at: 0s, call: {name: peak, from: floor1-win, count: 200}}\n"
                            "  - {at: 0s, call: {name: p2, from: floorx, count: 2}}\n"
                            "  - {at: 0s, call: {name: p3, from: f1-w001, over: 3s}}\n"
                            "  - {at: 0s, call: {name: p4, from: floor1, count: 2, engine: chromium}}",
                  "  - {calls: peak, errors: {ice_colection_timeout: 2}, audio: lots}")
    text = str(exc.value)
    assert "load.yaml:4: timeline[0].call.count: 'floor1-win' has 100 agent hosts: 200 calls need as many" in text
    assert "write count: 100 or less" in text
    assert "load.yaml:5: timeline[1].call.from: 'floorx' is not a group, a lan or a host" in text
    assert "load.yaml:6: timeline[2].call.over: 'over' is for a load run" in text
    assert "load.yaml:7: timeline[3].call.engine: 'engine: chromium' is for a single call" in text
    assert "load.yaml:9: expect[0].errors.ice_colection_timeout: 'ice_colection_timeout' is not an error" in text
    assert "did you mean 'ice_collection_timeout'?" in text
    assert "load.yaml:9: expect[0].audio: 'lots' is not a count" in text


def test_counts_and_shares():
    assert count_bound(200)[0].holds(200) and not count_bound(200)[0].holds(199)
    b, share, m, _ = count_bound(">= 99%")
    assert share and m is None and b.holds(0.99) and not b.holds(0.98)
    b, share, _, _ = count_bound("<= 2")
    assert not share and b.holds(2) and not b.holds(3)
    assert count_bound(True)[2] and count_bound("-3")[2]


def _record(name, talking=True, error=None, at=None):
    tl = [{"t": 0.0, "kind": "state", "name": "ConnectSignalingAndIceCollectionState"}]
    if talking:
        tl.append({"t": 0.2, "kind": "state", "name": "TalkingState"})
    else:
        tl.append({"t": at, "kind": "error", "name": "ICE_COLLECTION_TIMEOUT",
                   "state": "ConnectSignalingAndIceCollectionState"})
    q = {"heard_hz": 1000.0, "silent_audio": False, "payloads": {"matched": 50, "in_sequence": 50, "foreign": 0}}
    outcome = {"reached_talking": talking, "softphone_error": error, "quality": q if talking else {}, "timeline": tl}
    far = {"packets_received": 50, "heard_dbfs": -17.2, "heard_hz": 600.0,
           "payloads": {"matched": 50, "in_sequence": 50, "foreign": 0}} if talking else None
    return call_record(name, 1.0, outcome, far, "light")


def test_calls_expectations_count_outcomes(tmp_path):
    s = _scenario(tmp_path, "  - {at: 0s, call: {name: peak, from: floor1, count: 4}}",
                  "  - {calls: peak, talking: '>= 50%', audio: 2, failed: 2,"
                  " errors: {ice_collection_timeout: 2}, every_failure: ice_collection_timeout}\n"
                  "  - {calls: peak, talking: '>= 99%'}\n  - {calls: peak, every_failure: user_busy_error}")
    records = [_record("f1-l001"), _record("f1-l002"), _record("f1-l003", False, "ice_collection_timeout", 8.0),
               _record("f1-l004", False, "ice_collection_timeout", 8.01)]
    obs = {"calls:peak": {"count": 4, "calls": records, "tally": tally(records)}}
    good, share, other = evaluate(s, obs)
    assert good.status == "pass", good.observed
    assert "2 of 4 reached Talking, 2 with audio both ways, 2 failed (ice_collection_timeout 2)" in good.observed
    assert "errors 8.00 s-8.01 s after their state began" in good.observed
    assert share.status == "fail" and other.status == "fail"
    assert "failures other than user_busy_error: ice_collection_timeout 2" in other.observed


def test_light_audio_out_of_order_or_foreign_is_not_verified():
    r = _record("a")
    assert r["audio"] and r["talking"]
    bad = call_record("a", 0.0, {"reached_talking": True, "timeline": [], "quality": {
        "heard_hz": 1000.0, "payloads": {"matched": 50, "in_sequence": 48, "foreign": 0}}},
        {"packets_received": 50, "heard_dbfs": -17.0, "heard_hz": 600.0,
         "payloads": {"matched": 50, "in_sequence": 50, "foreign": 0}}, "light")
    assert bad["talking"] and not bad["audio"]


def _sample(t, insert_failed=0, drop=0, early_drop=0, entries=3):
    return (t, {"insert_failed": insert_failed, "drop": drop, "early_drop": early_drop, "entries": entries})


def test_the_port_pool_ran_out_when_insertions_failed():
    x = exhausted("edge", [_sample(0.0), _sample(1.1), _sample(1.2, 1, 1), _sample(9.0, 12, 12)], (50000, 50001))
    assert x["resource"] == "source-port pool" and x["at"] == 1.2 and x["refused"] == 12
    assert sentence(x) == ("edge's NAT ran out of its source-port pool (50000-50001: 2 outside ports) at 1.20 s of "
                           "the timeline: from then on 12 packets of new flows found no free outside port and were "
                           "dropped (conntrack insert_failed +12, drop +12)")


def test_a_full_table_drops_without_failed_insertions_and_nothing_is_nothing():
    x = exhausted("edge", [_sample(0.0), _sample(0.5, 0, 3, 1, entries=64)], None)
    assert x["resource"] == "connection table" and "between 0.00 s and 0.50 s" in sentence(x)
    assert exhausted("edge", [_sample(0.0), _sample(5.0)], None) is None


@pytest.mark.root
def test_forty_concurrent_calls_from_one_floor_are_all_verified():
    """The suite's size of the 200-call run (`make scale`, bench/scenarios/calls-200.yaml)."""
    s = load_scenario(ROOT / "bench/scenarios/calls-40.yaml")
    t = time.monotonic()
    r = run_scenario(s)
    took = time.monotonic() - t
    obs = r.observations["calls:peak"]
    assert r.verdict == "pass", [c.observed for c in r.checks]
    assert obs["tally"]["audio"] == 40 and obs["media"] == "light"
    print(f"40 calls: {took:.1f} s")


@pytest.mark.root
def test_the_peak_hour_report_says_the_port_pool_ran_out_and_when():
    r = run_scenario(load_scenario(ROOT / "scenarios/peak-hour-small-pool.yaml"))
    x = r.observations["nat-resources:edge"]
    assert x["resource"] == "source-port pool" and 0.0 < x["at"] < 9.0
    assert x["sentence"].startswith("edge's NAT ran out of its source-port pool (50000-50001: 2 outside ports)")
    assert any(e.source == "nat:edge" and "source-port pool exhausted" in e.what for e in r.events)
    assert x["sentence"] in r.observations["call:a3"]["diagnosis"]
    assert r.verdict == "pass"
