"""``icelab policy check`` wall-clock time, the command as an engineer runs it: a passing policy
(target <= 10 s) and a failing one with its fix verified (target <= 20 s), issue #15.

Run as root: `sudo PYTHONPATH=$PWD .venv/bin/python bench/policy.py [--runs 3]`.
Prints a Markdown table to paste into docs/benchmarks.md with the machine and date.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CASES = [("passing: stateful-ok.rules (iptables)", "stateful-ok.rules", (), 10.0),
         ("passing: stateful-ok.nft", "stateful-ok.nft", (), 10.0),
         ("failing: udp3478-missing.rules, fix verified", "udp3478-missing.rules", (), 20.0),
         ("failing: stateless-udp-return-missing.nft, fix verified", "stateless-udp-return-missing.nft", (), 20.0),
         ("failing: udp3478-missing.rules --through vpn-full", "udp3478-missing.rules", ("--through", "vpn-full"),
          20.0),
         ("failing: udp3478-missing.rules --vdi", "udp3478-missing.rules", ("--vdi",), 20.0)]


def once(policy: str, extra: tuple = ()) -> tuple[float, dict]:
    # two OSes: a softphone call each (0.5 s apart), the probes from both
    argv = [sys.executable, "-m", "lab.cli", "policy", "check", f"tests/policy/policies/{policy}",
            "--agents", "10.20.0.0/23", "--os", "windows", "--os", "linux", "--ip-ranges", "tests/policy/ip-ranges.json",
            "--region", "eu-west-2", "--interfaces", "inside=ens192,outside=ens160", "--name", "bench-policy", "--json",
            *extra]
    t = time.monotonic()
    r = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True,
                       env=dict(os.environ, PYTHONPATH=str(ROOT)))
    wall = time.monotonic() - t
    return wall, json.loads(r.stdout)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--only", help="run the cases whose title contains this")
    args = ap.parse_args()
    print(f"{platform.node()}, {os.cpu_count()} cores, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
          f"{args.runs} runs each\n")
    print(f"load average at the start: {os.getloadavg()[0]:.1f}\n")
    print("| policy | verdict | wall clock (median, min-max) | build | probes + call | fix + re-check | target |")
    print("|---|---|---|---|---|---|---|")
    for title, policy, extra, target in CASES:
        if args.only and args.only not in title:
            continue
        walls, parts = [], []
        for _ in range(args.runs):
            w, d = once(policy, extra)
            walls.append(w)
            parts.append(d["timings"])
        med = statistics.median
        print(f"| {title} | {d['verdict']} | {med(walls):.1f} s ({min(walls):.1f}-{max(walls):.1f}) "
              f"| {med(p.get('build', 0) for p in parts):.1f} s | {med(p.get('probe', 0) for p in parts):.1f} s "
              f"| {med(p.get('fix', 0) for p in parts):.1f} s | <= {target:.0f} s "
              f"{'met' if med(walls) <= target else 'NOT met'} |")


if __name__ == "__main__":
    main()
