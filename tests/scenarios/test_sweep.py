"""icelab sweep: parameters, the choice of link and call, the plots, and a tiny real sweep."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from lab.core.errors import InputError
from lab.scenario import sweep as sw

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).parent


def test_a_range_takes_the_unit_of_its_end_and_a_number_of_points():
    p = sw.parse_param("link.delay=0..400ms/9")
    assert p.field == "delay" and len(p.values) == 9
    assert p.values[0] == 0 and p.values[-1] == pytest.approx(0.4) and p.values[1] == pytest.approx(0.05)
    assert [p.label(v) for v in p.values[:3]] == ["0ms", "50ms", "100ms"]
    assert len(sw.parse_param("link.loss=0..20%").values) == sw.DEFAULT_POINTS
    assert sw.parse_param("link.loss=0%,5%,20%").values == (0.0, 0.05, 0.2)
    assert sw.parse_param("link.rate=64kbit..1mbit/3").values == (64000.0, 532000.0, 1e6)


@pytest.mark.parametrize("text, words", [
    ("link.delay=0..400", "no unit"),
    ("link.delay=0..400ms/1", "number of points"),
    ("link.delay=0..400ms/x", "number of points"),
    ("link.delay=400ms..0ms", "backwards"),
    ("link.loss=0..120%", "out of range"),
    ("link.dealy=0..400ms", "not a link setting"),
    ("delay=0..400ms", "only link settings"),
    ("link.delay", "needs '='"),
    ("link.loss=5%,5%", "twice"),
])
def test_bad_parameters_are_input_errors_with_a_hint(text, words):
    with pytest.raises(InputError) as e:
        sw.parse_params([text])
    p = e.value.problems[0]
    assert words in p.message and p.hint and p.file == "--param"


def test_at_most_two_parameters_each_once():
    with pytest.raises(InputError, match="at most two"):
        sw.parse_params(["link.delay=0..1ms", "link.loss=0..1%", "link.jitter=0..1ms"])
    with pytest.raises(InputError, match="swept twice"):
        sw.parse_params(["link.delay=0..1ms", "link.delay=0..2ms"])
    with pytest.raises(InputError, match="nothing to sweep"):
        sw.parse_params([])


def test_the_grid_varies_the_first_parameter_slowest():
    g = sw.grid(sw.parse_params(["link.delay=0ms,1ms", "link.loss=0%,1%,2%"]))
    assert [tuple(x.values()) for x in g][:4] == [(0, 0), (0, 0.01), (0, 0.02), (0.001, 0)]


def test_the_link_comes_from_the_option_the_sweep_section_or_a_link_step():
    from lab.scenario.load import load_scenario
    s = load_scenario(HERE / "sweep" / "sweep-call.yaml")
    assert sw.choose_link(s, None) == ("edge", "isp")
    assert sw.choose_link(s, "office-lan-edge") == ("office-lan", "edge")     # names with '-'
    with pytest.raises(InputError, match="no link"):
        sw.choose_link(s, "agent1-isp")
    assert sw.choose_call(s, None) == "agent1"
    with pytest.raises(InputError, match="no call"):
        sw.choose_call(s, "agent2")
    r = load_scenario(ROOT / "scenarios" / "rtt250-loss5.yaml")
    assert sw.choose_link(r, None) == ("edge", "isp")


def test_the_swept_step_comes_after_the_scenarios_own_link_steps_at_zero():
    from lab.scenario.load import load_scenario
    s = load_scenario(ROOT / "scenarios" / "rtt250-loss5.yaml")
    p = sw.point_scenario(s, ("edge", "isp"), "both", {"delay": "10ms"})
    links = [st for st in p.steps if st.action == "link"]
    assert [st.spec.settings for st in links] == [{"delay": "125ms", "loss": "5%"}, {"delay": "10ms"}]
    assert p.capture == "none" and s.capture == "none" and len(s.steps) == len(p.steps) - 1


def _fake(params):
    ps = sw.parse_params(params)
    out = sw.Sweep("demo", "demo.yaml", ("edge", "isp"), "both", "agent1", ps)
    for i, values in enumerate(sw.grid(ps)):
        pt = sw.Point(values, {f: next(p for p in ps if p.field == f).label(v) for f, v in values.items()})
        if i == 2:
            pt.outcome, pt.error, pt.error_at, pt.verdict = "failed", "ice_collection_timeout", 8.0, "fail"
        else:
            pt.outcome, pt.setup, pt.first_candidate, pt.loss, pt.verdict = "talking", 0.5 + i, 0.2, 0.01 * i, "pass"
            pt.audio_start = 0.3
        out.points.append(pt)
    return out


@pytest.mark.parametrize("params", [["link.delay=0..400ms/4"], ["link.delay=0ms,100ms", "link.loss=0%,5%"]])
def test_the_report_writes_png_svg_markdown_and_json(tmp_path, params):
    from lab.report import sweep as report
    s = _fake(params)
    d = report.write(s, tmp_path)
    for name in ("sweep.png", "sweep.svg", "sweep.md", "sweep.json"):
        assert (d / name).stat().st_size > 0
    assert "ice_collection_timeout" in (d / "sweep.md").read_text()
    assert "ICE" in (d / "sweep.svg").read_text()      # the failed point is labelled
    data = json.loads((d / "sweep.json").read_text())
    assert len(data["points"]) == len(s.points) and data["points"][2]["error"] == "ice_collection_timeout"


def test_bad_parameters_on_the_command_line_exit_2_and_build_nothing():
    r = subprocess.run([sys.executable, "-m", "lab.cli", "sweep", str(HERE / "sweep" / "sweep-call.yaml"),
                        "--param", "link.delay=0..400"], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert r.returncode == 2, r.stderr
    assert "link.delay=0..400" in r.stderr and "hint:" in r.stderr and "nothing was built" in r.stderr
    r = subprocess.run([sys.executable, "-m", "lab.cli", "sweep", str(HERE / "sweep" / "sweep-call.yaml"), "--link", "edge-nowhere"],
                       capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert r.returncode == 2 and "no link" in r.stderr


@pytest.mark.root
def test_a_tiny_sweep_runs_every_point_and_plots_it(tmp_path):
    r = subprocess.run([sys.executable, "-m", "lab.cli", "sweep", str(HERE / "sweep" / "sweep-call.yaml"),
                        "--param", "link.delay=0ms,40ms", "--param", "link.loss=0%,2%", "--json", "-o", str(tmp_path)],
                       capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert r.returncode == 0, r.stderr[-3000:]
    data = json.loads(r.stdout)
    pts = data["points"]
    assert [(p["labels"]["delay"], p["labels"]["loss"]) for p in pts] == [
        ("0ms", "0%"), ("0ms", "2%"), ("40ms", "0%"), ("40ms", "2%")]
    # every point reached Talking; the delay shows in the set-up time (several round trips)
    assert all(p["outcome"] in ("talking", "silent") and p["setup"] is not None for p in pts), pts
    assert pts[2]["setup"] > pts[0]["setup"] + 0.2
    assert pts[2]["first_candidate"] == pytest.approx(0.16, abs=0.08)       # two round trips of 80 ms
    for name in ("sweep.png", "sweep.svg", "sweep.json", "sweep.md"):
        assert (tmp_path / "sweep-sweep-call" / name).is_file()


def test_ranges_with_decimal_points():
    assert sw.parse_param("link.delay=0.5ms..2ms/4").values == pytest.approx((0.0005, 0.001, 0.0015, 0.002))
    assert sw.parse_param("link.delay=0..1.5s/3").values == pytest.approx((0, 0.75, 1.5))
