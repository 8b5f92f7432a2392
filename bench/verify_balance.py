"""How evenly `icelab verify --parallel N` keeps its workers busy: the scenarios in name order
(as before issue 18's balancing) against the longest first (now), by the durations the shard
split uses.

``PYTHONPATH=$PWD .venv/bin/python bench/verify_balance.py [DIR] [-n N] [--durations FILE]``
replays both orders on N workers (each scenario to the first free worker, as the pool does)
with the recorded durations, for the whole set and for the subsets `-k WORD` selects (WORD
each word of the scenario names), and prints when each order's last worker finishes against
the bound no order can beat (the longest scenario, or the total over N), and, since the name
order is one arbitrary order, the median and worst of 1000 random orders (what the balance was
left to before: the luck of the names). No lab is built: the
durations are the last measured run's, so this is what the orders do with real durations
without the noise of the machine's load.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def finish(order: list[str], n: int, durations: dict[str, float], estimate: float) -> float:
    free = [0.0] * n
    for name in order:
        i = free.index(min(free))
        free[i] += durations.get(name, estimate)
    return max(free)


def main() -> int:
    from lab.scenario import shard
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("dir", nargs="?", default=str(ROOT / "scenarios"))
    ap.add_argument("-n", type=int, default=2)
    ap.add_argument("--durations")
    args = ap.parse_args()
    durations = shard.load_durations(args.durations or Path(args.dir) / shard.DURATIONS)
    names = sorted(p.stem for p in Path(args.dir).glob("*.yaml"))
    words = sorted({w for n in names for w in n.split("-") if not w.isdigit() and len(w) > 2})
    print(f"{len(names)} scenarios, {shard.expected(names, durations):.0f} s recorded, {args.n} workers")
    print(f"{'set':<16} {'scenarios':>9} {'bound':>7} {'name order':>11} {'random: median':>15} {'worst':>7} "
          f"{'longest first':>14}")
    rng = random.Random(18)
    rows = [("all", names)] + [(f"-k {w}", [n for n in names if w in n]) for w in words]
    for label, subset in rows:
        if len(subset) <= args.n:
            continue
        bound = max(max(durations.get(s, shard.ESTIMATE) for s in subset), shard.expected(subset, durations) / args.n)
        before = finish(subset, args.n, durations, shard.ESTIMATE)
        after = finish(sorted(subset, key=lambda s: (-durations.get(s, shard.ESTIMATE), s)), args.n, durations,
                       shard.ESTIMATE)
        shuffled = [finish(rng.sample(subset, len(subset)), args.n, durations, shard.ESTIMATE) for _ in range(1000)]
        print(f"{label:<16} {len(subset):>9} {bound:>6.1f}s {before:>10.1f}s {statistics.median(shuffled):>14.1f}s "
              f"{max(shuffled):>6.1f}s {after:>13.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
