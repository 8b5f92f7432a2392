"""How long `icelab validate` takes to start, check a topology and exit (issue #12: < 0.3 s).

Each run is a fresh interpreter, as a person or a CI step would start it. The machine is
shared and noisy, so the figure reported is the minimum and the median of N runs, wall and CPU
(user + system) apart: the minimum is what the code costs, the median what a person waits.
``python -c pass`` is run side by side as the floor no command can go under.

    .venv/bin/python bench/startup.py [-n 15] [topology ...]
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def once(argv: list[str]) -> tuple[float, float]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run(argv, cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def measure(argv: list[str], n: int) -> dict:
    runs = [once(argv) for _ in range(n)]
    walls, cpus = [w for w, _ in runs], [c for _, c in runs]
    return {"wall_min": min(walls), "wall_median": statistics.median(walls),
            "cpu_min": min(cpus), "cpu_median": statistics.median(cpus)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=15)
    ap.add_argument("topologies", nargs="*", default=["topologies/office-firewall.yaml",
                                                      "topologies/contact-centre.yaml"])
    args = ap.parse_args()
    print(f"{os.uname().nodename}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}, "
          f"{time.strftime('%Y-%m-%d %H:%M %Z')}, {args.n} runs each")
    rows = [("python -c pass", [sys.executable, "-c", "pass"])]
    rows += [(f"icelab validate {t}", [sys.executable, "-m", "lab.cli", "validate", t]) for t in args.topologies]
    print(f"{'command':58s} {'wall min':>9s} {'median':>8s} {'cpu min':>8s} {'median':>8s}")
    for name, argv in rows:
        m = measure(argv, args.n)
        print(f"{name:58s} {m['wall_min']:8.3f}s {m['wall_median']:7.3f}s {m['cpu_min']:7.3f}s {m['cpu_median']:7.3f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
