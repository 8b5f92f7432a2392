"""The shaper's delay line without a kernel: a fake clock, a seeded random source."""

import random
import statistics

from lab.model.impairment import GilbertElliott, Impairment
from lab.net.shaper.engine import Direction, Scheduler, standard_sample


def _feed(d: Direction, times, size=100):
    return [d.arrive(t, i, size) for i, t in enumerate(times)]


def test_delay_and_jitter_never_reorder():
    d = Direction(Impairment(delay=0.010, jitter=0.005), random.Random(1))
    held = _feed(d, [i * 0.001 for i in range(2000)])
    releases = [h.release for h in held]
    assert releases == sorted(releases)
    assert all(h.release >= h.departed for h in held)


def test_standard_samples_have_unit_deviation():
    rng = random.Random(2)
    for dist, tolerance in (("normal", 0.03), ("uniform", 0.03), ("pareto", 0.1), ("paretonormal", 0.1)):
        xs = [standard_sample(rng, dist) for _ in range(40000)]
        assert abs(statistics.fmean(xs)) < 0.03 and abs(statistics.stdev(xs) - 1) < tolerance, dist


def test_rate_serialises_and_tail_drops():
    d = Direction(Impairment(rate=1e6, queue=10), random.Random(3))
    held = _feed(d, [0.0] * 20, size=1236)          # 1250 bytes on the wire: 10 ms each
    kept = [h for h in held if h]
    assert len(kept) == 10 and d.counters.overflow == 10
    assert [round(h.release, 6) for h in kept] == [round(0.01 * (i + 1), 6) for i in range(10)]


def test_gilbert_elliott_mean_loss_and_bursts():
    ge = GilbertElliott.from_mean(0.05, 4)
    d = Direction(Impairment(burst=ge), random.Random(4))
    lost = [d.lost() for _ in range(200000)]
    assert abs(sum(lost) / len(lost) - 0.05) < 0.005
    bursts, run = [], 0
    for x in lost:
        if x:
            run += 1
        elif run:
            bursts.append(run)
            run = 0
    assert abs(statistics.fmean(bursts) - 4) < 0.15


def test_a_change_reschedules_held_packets_in_order():
    d = Direction(Impairment(delay=0.100), random.Random(5))
    s = Scheduler()
    for h in _feed(d, [0.0, 0.001, 0.002]):
        s.push(d, h)
    d.change(Impairment(delay=0.020), s.held_by(d))
    s.rebuild()
    assert [round(h.release, 6) for _, h in s.due(1.0)] == [0.02, 0.021, 0.022]
    assert d.passthrough is False
    d.change(Impairment(), [])
    assert d.passthrough
