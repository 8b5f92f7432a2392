"""The shaper's calibration without a lab: what it derives from the latencies it measures."""

from lab.net.shaper import calibrate
from lab.net.shaper.calibrate import Calibration


def test_early_covers_the_timer_lateness_within_bounds():
    c = Calibration()
    # 95th percentile of the lateness, plus a margin
    assert abs(c.adapt([i * 1e-5 for i in range(100)]) - (95e-5 + 5e-5)) < 1e-9
    assert abs(c.timer_late - 95e-5) < 1e-12 and c.adjusted == 1
    assert c.adapt([0.0] * 50) == calibrate.MIN_EARLY          # never below: a timer is never exact
    assert c.adapt([0.05] * 50) == calibrate.MAX_EARLY         # nor spinning for milliseconds


def test_the_report_is_in_microseconds():
    c = Calibration(read_lag=0.000123, early=0.0002, samples=38)
    d = c.to_dict()
    assert d["read_lag_us"] == 123.0 and d["early_us"] == 200.0 and d["samples"] == 38 and d["error"] == ""


def test_timer_lateness_is_measured():
    late = calibrate.timer_lateness(n=5, wait=0.0005)
    assert len(late) == 5 and all(-1e-4 < x < 0.1 for x in late)
