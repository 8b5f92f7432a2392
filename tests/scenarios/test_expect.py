"""Call expectations evaluated from observations, without a lab: audio quality bounds."""

from pathlib import Path

from lab.scenario.expect import audio_loss, evaluate
from lab.scenario.load import load_scenario

ROOT = Path(__file__).resolve().parents[2]


def _scenario(tmp_path, bounds: str):
    f = tmp_path / "q.yaml"
    f.write_text(f"""name: q
topology: {ROOT / 'topologies/agent-lan.yaml'}
timeline:
  - {{at: 0s, call: {{from: agent1, talk: 3s}}}}
expect:
  - {{call: agent1, {bounds}}}
""")
    return load_scenario(f)


def _talking(**quality):
    q = {"packets_sent": 150, "packets_received": 150, "packets_lost": 0, "jitter_ms": 2.0, "rtt_ms": 40.0,
         "remote_packets_lost": 0, "silent_audio": False}
    q.update(quality)
    return {"call:agent1": {"reached_talking": True, "quality": q, "times": {}, "timeline": []}}


def test_loss_is_the_worse_direction():
    assert audio_loss({"packets_received": 95, "packets_lost": 5, "packets_sent": 100, "remote_packets_lost": 1}) == 0.05
    assert audio_loss({"packets_received": 100, "packets_lost": 0, "packets_sent": 100, "remote_packets_lost": 8}) == 0.08
    assert audio_loss({"packets_received": 0, "packets_lost": 0, "packets_sent": 0}) is None


def test_quality_bounds_pass_and_fail(tmp_path):
    s = _scenario(tmp_path, "loss: '< 2%', jitter: '< 30ms', rtt: '< 100ms'")
    [c] = evaluate(s, _talking())
    assert c.status == "pass", c.observed
    assert "audio loss 0.0 %" in c.observed and "audio jitter 2.0 ms" in c.observed
    [c] = evaluate(s, _talking(packets_received=140, packets_lost=10))
    assert c.status == "fail" and "audio loss 6.7 %" in c.observed
    [c] = evaluate(s, _talking(jitter_ms=45.0))
    assert c.status == "fail"


def test_a_quality_bound_that_cannot_be_measured_is_an_error(tmp_path):
    s = _scenario(tmp_path, "rtt: '< 100ms'")
    [c] = evaluate(s, _talking(rtt_ms=None))
    assert c.status == "error" and "no RTCP receiver report" in c.observed
    # a call that never reached Talking fails a quality bound (it had no audio at all)
    [c] = evaluate(s, {"call:agent1": {"reached_talking": False, "softphone_error": "ice_collection_timeout",
                                       "quality": {}, "times": {}, "timeline": []}})
    assert c.status == "fail"
