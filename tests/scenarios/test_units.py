"""One reader for durations in every file format: a scenario's ``at``, a probe's times, a
link's ``delay`` (topology or ``link`` step) take the same units and the same bare 0."""

from pathlib import Path

import pytest

from lab.core.units import parse_duration, percent_setting, rate_setting, read_duration, time_setting
from lab.model.impairment import parse_link_impair
from lab.scenario.load import load_scenario

ROOT = Path(__file__).resolve().parents[2]


def scenario(tmp_path: Path, at, delay) -> Path:
    f = tmp_path / "s.yaml"
    f.write_text(f"""name: units
topology: {ROOT / 'topologies/agent-lan.yaml'}
timeline:
  - {{at: {at}, link: {{a: edge, b: isp, delay: {delay}}}}}
  - {{at: {at}, probe: {{name: p, from: agent1, to: turn, proto: stun, port: 3478, interval: {at}}}}}
expect:
  - {{probe: p, reached: true}}
""")
    return f


@pytest.mark.parametrize("text, seconds", [("500us", 0.0005), ("500µs", 0.0005), (0, 0.0), (0.0, 0.0),
                                           ("20ms", 0.02), ("1.5s", 1.5), ("2min", 120.0)])
def test_every_format_reads_durations_alike(text, seconds):
    assert read_duration(text).value == pytest.approx(seconds)
    assert parse_duration(text)[0] == pytest.approx(seconds)
    issues: list = []
    assert time_setting(text, (), issues, "delay") == pytest.approx(seconds)
    assert issues == []


def test_at_500us_as_delay_500us(tmp_path):
    s = load_scenario(scenario(tmp_path, "500us", "500us"))
    link, probe = s.steps
    assert link.at == probe.at == pytest.approx(0.0005)
    assert probe.spec.interval == pytest.approx(0.0005)          # typed at load: seconds
    imp, issues = parse_link_impair({"delay": "500us"})
    assert issues == [] and imp.a2b.delay == pytest.approx(0.0005)


def test_at_0_as_delay_0(tmp_path):
    s = load_scenario(scenario(tmp_path, 0, 0))
    assert [st.at for st in s.steps] == [0.0, 0.0]
    imp, issues = parse_link_impair({"delay": 0})
    assert issues == [] and imp.a2b.delay == 0.0


def test_delay_500us_on_a_topology_link():
    imp, issues = parse_link_impair({"delay": "500us", "jitter": "0"})
    assert imp is None and issues == [(("jitter",), "'0' is not a time", "write a time with its unit: 20ms, 0.2s or 500us")]


@pytest.mark.parametrize("value", [8, 0.5])
def test_a_bare_number_other_than_0_is_still_refused(value):
    assert parse_duration(value)[1] == f"{value} has no unit"
    issues: list = []
    assert time_setting(value, (), issues, "delay") is None and "has no unit" in issues[0][1]


def test_percent_and_rate_share_the_reader():
    issues: list = []
    assert percent_setting("2.5%", (), issues, "loss") == pytest.approx(0.025)
    assert percent_setting(0, (), issues, "loss") == 0.0
    assert rate_setting("1.5mbit", (), issues) == 1.5e6
    assert issues == []
    # a bare 0 is a time or a loss of nothing, but a rate of 0 would mean "no limit": refused
    assert rate_setting(0, (), issues) is None and "no limit at all" in issues[0][1]
