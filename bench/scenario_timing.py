"""Where a scenario's time goes (issue 7): ``sudo PYTHONPATH=$PWD .venv/bin/python
bench/scenario_timing.py [SCENARIO] [-n RUNS] [--turn-backend B]``.

Targets: a passing scenario end to end (build, call, 3 s of verified audio, teardown) under
6 s; lab overhead beyond the emulated timers under 2 s. "Emulated timers" are what the
scenario itself asks to wait for: the calls' talk time (and answer delays). Everything else
(building, services, the softphone process starting, captures, teardown, diagnosis) is the
lab's overhead. Prints the median of each ``timings`` entry of result.json, min and max.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def emulated(scenario) -> float:
    """The timers the scenario waits for on purpose: a call's talk time and answer delay, or
    the softphone's 8 s ICE timer for a call expected to end in ice_collection_timeout."""
    from lab.agent.constants import DEFAULT_ICE_TIMEOUT
    total = 0.0
    for s in scenario.steps:
        if s.action != "call":
            continue
        times_out = any(e.kind == "call" and e.target == s.name and e.spec.error == "ice_collection_timeout"
                        for e in scenario.expectations)
        total += DEFAULT_ICE_TIMEOUT if times_out else s.spec.talk + s.spec.answer_delay    # seconds since load
    return total


def main() -> int:
    from lab.scenario.load import load_scenario
    from lab.scenario.runner import run_scenario
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("scenario", nargs="?", default=str(ROOT / "bench/scenarios/call-3s.yaml"))
    ap.add_argument("-n", type=int, default=5)
    ap.add_argument("--turn-backend", choices=("embedded", "coturn"))
    ap.add_argument("--capture", choices=("auto", "none"), help="override the scenario's capture")
    args = ap.parse_args()
    s = load_scenario(args.scenario, turn_backend=args.turn_backend)
    if args.capture:
        s.capture = args.capture
    runs = []
    for i in range(args.n):
        t0 = time.monotonic()
        r = run_scenario(s)
        wall = time.monotonic() - t0
        if r.verdict != "pass":
            print(f"run {i + 1}: {r.verdict} {r.error or [c.observed for c in r.checks]}")
            return 1
        runs.append(dict(r.timings, end_to_end=wall, overhead=wall - emulated(s)))
        print(f"run {i + 1}: end to end {wall:.2f} s, overhead {wall - emulated(s):.2f} s")
    print(f"\n{s.name} ({r.turn_backend or 'no TURN'}), {args.n} runs, emulated timers {emulated(s):.2f} s")
    keys = [k for k in runs[0] if all(k in r for r in runs)]
    for k in keys:
        vals = [r[k] for r in runs]
        print(f"  {k:28} {statistics.median(vals):7.3f} s  (min {min(vals):.3f}, max {max(vals):.3f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
