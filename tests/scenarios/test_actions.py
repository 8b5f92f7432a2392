"""The action registry: schema, load and runner take every action from it; a checked step
holds its typed form; observations read as types."""

from pathlib import Path

from lab.scenario import schema as S
from lab.scenario.actions import ACTIONS, EXPECTS
from lab.scenario.load import load_scenario
from lab.scenario.observations import CallObservation, ProbeObservation

ROOT = Path(__file__).resolve().parents[2]


def test_the_registry_is_what_the_schema_shows():
    assert list(ACTIONS) == ["probe", "call", "link", "flush-conntrack", "turn", "rule", "probe-endpoint"]
    assert list(EXPECTS) == ["probe", "call", "calls", "nat", "endpoint"]
    assert S.ACTION_MODELS == {name: a.model for name, a in ACTIONS.items()}
    steps = S.json_schema()["properties"]["timeline"]["items"]["oneOf"]
    assert [next(k for k in st["required"] if k != "at") for st in steps] == list(ACTIONS)


def test_a_checked_step_holds_seconds(tmp_path):
    f = tmp_path / "s.yaml"
    f.write_text(f"""name: typed
topology: {ROOT / 'topologies/agent-lan.yaml'}
timeline:
  - {{at: 0s, probe: {{name: p, from: agent1, to: turn, proto: stun, port: 3478, timeout: 2s}}}}
  - {{at: 1s, call: {{from: agent1, talk: 4s, answer_delay: 250ms}}}}
expect:
  - {{probe: p, reached: true, rtt: '< 50ms'}}
  - {{call: agent1, outcome: talking}}
""")
    s = load_scenario(f)
    probe, call = s.steps
    assert (probe.spec.interval, probe.spec.timeout) == (0.05, 2.0)
    assert (call.spec.talk, call.spec.answer_delay) == (4.0, 0.25)
    assert s.expectations[0].bounds["rtt"].high == 0.05
    assert s.expectations[0].title == "probe p: reached, rtt"


def test_observations_read_partial_records():
    c = CallObservation.from_dict({"reached_talking": True, "quality": {"packets_received": 95, "packets_lost": 5}})
    assert c.quality.loss == 0.05 and c.far_end is None and c.times.talking is None and c.start == 0.0
    p = ProbeObservation.from_dict({"sent": 5, "replies": 4, "requests_received": None, "to_node": "turn"})
    assert p.rtt_ms == [] and p.answered_by is None
