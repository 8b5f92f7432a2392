"""The netem backend's translation of the lab's settings into `tc ... netem` arguments.

No kernel needed: these run everywhere. tests/netem/test_netem.py runs them for real.
"""

import glob
import math
import statistics

import pytest
from support import optional_part_missing

from lab.model.impairment import GilbertElliott, Impairment
from lab.net.shaper.netem import TABLE_SD, netem_args


def _arg_after(args, word):
    return args[args.index(word) + 1]


def test_uniform_jitter_is_a_half_width_of_sqrt3_deviations():
    args = netem_args(Impairment(delay=0.060, jitter=0.010, distribution="uniform"))
    assert args[args.index("delay"):] == ["delay", "60000us", f"{0.010 * math.sqrt(3) * 1e6:.0f}us"]


@pytest.mark.parametrize("distribution", ["normal", "pareto", "paretonormal"])
def test_table_jitter_gives_the_standard_deviation(distribution):
    args = netem_args(Impairment(delay=0.060, jitter=0.010, distribution=distribution))
    i = args.index("delay")
    assert args[i + 3:i + 5] == ["distribution", distribution]
    # netem adds jitter x table value / 8192 (NETEM_DIST_SCALE): the table's deviation scales it
    tables = glob.glob(f"/usr/lib/*/tc/{distribution}.dist") + glob.glob(f"/usr/lib/tc/{distribution}.dist")
    if not tables:
        optional_part_missing(f"iproute2's {distribution}.dist")   # skips here; fails under CI
    values = [int(x) for line in open(tables[0]) if not line.startswith("#") for x in line.split()]
    table_sd = statistics.pstdev(values) / 8192
    assert abs(table_sd - TABLE_SD[distribution]) < 0.001, table_sd
    assert abs(float(args[i + 2].removesuffix("us")) * 1e-6 * table_sd - 0.010) < 2e-6


def test_loss_rate_and_queue():
    ge = GilbertElliott(p=0.01, r=0.25, bad=1.0, good=0.0)
    args = netem_args(Impairment(burst=ge, rate=1e6, queue=50))
    assert args[:2] == ["limit", "50"]
    assert args[args.index("loss"):args.index("loss") + 6] == ["loss", "gemodel", "1%", "25%", "100%", "0%"]
    assert _arg_after(args, "rate") == "1000000bit"
    assert netem_args(Impairment(loss=0.02))[:4] == ["limit", "1000", "loss", "random"]
