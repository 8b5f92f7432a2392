"""Build and teardown time of the starter topology and of generated 100-host topologies.

Run as root: `sudo make bench` (or `sudo .venv/bin/python bench/build_teardown.py`).
Prints a Markdown table to paste into docs/benchmarks.md with the machine and date.
Targets (issue #2): starter topology up in under 1.5 s, 100 hosts in under 10 s.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))         # the synthetic topologies live with the tests

from lab.model import load_topology             # noqa: E402
from lab.net import Network                     # noqa: E402
from synthetic import office_grid               # noqa: E402


def measure(topo, runs: int) -> dict:
    builds, teardowns = [], []
    for _ in range(runs):
        net = Network(topo)
        t0 = time.monotonic()
        net.build()
        t1 = time.monotonic()
        net.teardown()
        t2 = time.monotonic()
        builds.append(t1 - t0)
        teardowns.append(t2 - t1)
        time.sleep(0.2)
    return {"build": builds, "teardown": teardowns}


def fmt(xs: list[float]) -> str:
    return f"{statistics.median(xs):.2f} s (min {min(xs):.2f}, max {max(xs):.2f})"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    cases = [
        ("starter (agent-lan.yaml, 10 nodes)", load_topology(ROOT / "topologies/agent-lan.yaml").renamed("bench1")),
        ("100 hosts, 10 LANs (126 nodes)", load_topology("<grid>", text=office_grid(100, 10, name="bench2"))),
        ("100 hosts, 1 LAN (104 nodes)", load_topology("<grid>", text=office_grid(100, 100, name="bench3"))),
    ]
    print(f"machine: {platform.node()} {platform.machine()}, {os.cpu_count()} cores, kernel {platform.release()}, "
          f"Python {platform.python_version()}; {time.strftime('%Y-%m-%d')}; {args.runs} runs each\n")
    print("| topology | build (until forwarding) | teardown |")
    print("|---|---|---|")
    for label, topo in cases:
        r = measure(topo, args.runs)
        print(f"| {label} | {fmt(r['build'])} | {fmt(r['teardown'])} |", flush=True)


if __name__ == "__main__":
    main()
