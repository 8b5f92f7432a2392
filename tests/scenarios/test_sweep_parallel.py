"""`icelab sweep --parallel N`: grid points run side by side, each in a lab named after its
worker slot, and come back in grid order with the same measurements a sequential sweep makes."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]


@pytest.mark.root
def test_a_parallel_sweep_keeps_grid_order_and_measures_each_point(tmp_path):
    r = subprocess.run([sys.executable, "-m", "lab.cli", "sweep", str(HERE / "sweep" / "sweep-call.yaml"),
                        "--param", "link.delay=0ms,40ms,80ms", "--parallel", "2", "--json", "-o", str(tmp_path)],
                       capture_output=True, text=True, cwd=ROOT, timeout=180)
    assert r.returncode == 0, r.stderr[-3000:]
    pts = json.loads(r.stdout)["points"]
    assert [p["labels"]["delay"] for p in pts] == ["0ms", "40ms", "80ms"]
    assert all(p["outcome"] in ("talking", "silent") for p in pts), pts
    # two round trips to TURN before the first relay candidate: each point saw its own lab's delay
    assert pts[0]["first_candidate"] < pts[1]["first_candidate"] < pts[2]["first_candidate"], pts
    assert pts[2]["first_candidate"] == pytest.approx(0.32, abs=0.1)       # two round trips of 160 ms


def test_parallel_must_be_positive():
    r = subprocess.run([sys.executable, "-m", "lab.cli", "sweep", str(HERE / "sweep" / "sweep-call.yaml"),
                        "--parallel", "0"], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert r.returncode == 2 and "--parallel 0" in r.stderr
