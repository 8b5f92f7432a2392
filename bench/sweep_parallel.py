"""A sweep one point after the other against the same sweep at ``--parallel N``, side by side
in one run (issue 18: a 20-point sweep at ``--parallel 2`` takes <= 0.6x its sequential time).

``sudo PYTHONPATH=$PWD .venv/bin/python bench/sweep_parallel.py [SCENARIO] [--parallel N]
[--rounds R] [--fresh-labs]`` runs `icelab sweep` as an engineer runs it (the command's own
start-up included), sequential and parallel alternately R times, so that load from other jobs
falls on both, and prints each wall time, the ratio of each round and the load average.
``--fresh-labs`` (passed on to both sweeps) builds a lab per point, as sweeps did before a
worker kept its lab from point to point.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def sweep(scenario: str, parallel: int, extra: list[str]) -> tuple[float, dict]:
    with tempfile.TemporaryDirectory() as out:
        argv = [sys.executable, "-m", "lab.cli", "sweep", scenario, "--json", "-o", out,
                "--parallel", str(parallel), *extra]
        t0 = time.monotonic()
        r = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT)
        wall = time.monotonic() - t0
    if r.returncode != 0:
        sys.exit(f"sweep --parallel {parallel} failed:\n{r.stderr[-2000:]}")
    return wall, json.loads(r.stdout)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("scenario", nargs="?", default=str(ROOT / "bench/scenarios/sweep-20.yaml"))
    ap.add_argument("--parallel", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--fresh-labs", action="store_true")
    ap.add_argument("extra", nargs=argparse.REMAINDER, help="more `icelab sweep` arguments (after --)")
    args = ap.parse_args()
    extra = [a for a in args.extra if a != "--"] + (["--fresh-labs"] if args.fresh_labs else [])
    print(f"load average before: {os.getloadavg()[0]:.2f}; {os.cpu_count()} cores; "
          f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    ratios = []
    for i in range(args.rounds):
        seq, a = sweep(args.scenario, 1, extra)
        par, b = sweep(args.scenario, args.parallel, extra)
        outcomes = lambda s: [p["outcome"] for p in s["points"]]
        ratios.append(par / seq)
        print(f"round {i + 1}: {len(a['points'])} points; sequential {seq:.1f} s, --parallel {args.parallel} "
              f"{par:.1f} s: {par / seq:.2f}x; per point {sum(p['wall'] for p in a['points']) / len(a['points']):.2f} s "
              f"sequential, {sum(p['wall'] for p in b['points']) / len(b['points']):.2f} s parallel; "
              f"outcomes equal: {outcomes(a) == outcomes(b)}; load {os.getloadavg()[0]:.2f}")
    ratios.sort()
    print(f"ratio median {ratios[len(ratios) // 2]:.2f}x (min {ratios[0]:.2f}, max {ratios[-1]:.2f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
