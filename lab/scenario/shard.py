"""Splitting a scenario set into N shards for CI fan-out (`icelab verify --shard K/N`).

The CI system is the distributed engine: it starts N jobs (a GitHub Actions matrix, a GitLab
`parallel:` job), each runs `icelab verify --shard K/N`, and `icelab merge` puts their results
back together. All this module does is split the same set the same way on every machine,
without talking to the others: the split depends only on the scenario names and the recorded
durations, and so is deterministic.

Balance: the longest scenario first, each onto the shard with the least work so far (LPT,
within 4/3 of the best split). Durations come from the last measured run (a ``durations.json``
that `verify` and `merge` write, or a ``summary.csv``); a scenario never measured counts as
``ESTIMATE`` seconds, about the median of the seed set.
"""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

from lab.core.errors import UsageError

ESTIMATE = 20.0          # seconds: a scenario without a recorded duration (the seed set's median is 15-25 s)
DURATIONS = ".durations.json"    # beside the scenario files: the durations the split uses by default

_SHARD_RE = re.compile(r"^(\d+)/(\d+)$")


def parse_shard(text: str) -> tuple[int, int]:
    """'2/4' -> (2, 4); shards count from 1, as CI matrices and GitLab's CI_NODE_INDEX do."""
    m = _SHARD_RE.match(text.strip())
    if not m or not 1 <= int(m.group(1)) <= int(m.group(2)):
        raise UsageError(f"--shard '{text}' is not K/N with 1 <= K <= N\n"
                         "    hint: e.g. --shard 1/4 ... --shard 4/4 (GitLab: --shard $CI_NODE_INDEX/$CI_NODE_TOTAL)")
    return int(m.group(1)), int(m.group(2))


def split(names: list[str], n: int, durations: dict[str, float]) -> list[list[str]]:
    """The names in ``n`` shards of about equal total duration, each shard in name order."""
    shards: list[list[str]] = [[] for _ in range(n)]
    load = [0.0] * n
    for name in sorted(names, key=lambda s: (-durations.get(s, ESTIMATE), s)):
        k = min(range(n), key=lambda i: (load[i], i))
        shards[k].append(name)
        load[k] += durations.get(name, ESTIMATE)
    return [sorted(s) for s in shards]


def expected(names: list[str], durations: dict[str, float]) -> float:
    return sum(durations.get(s, ESTIMATE) for s in names)


def load_durations(path: str | Path) -> dict[str, float]:
    """Seconds per scenario from a durations.json ({name: seconds}) or a summary.csv (total_s);
    a missing file is no durations (every scenario then counts as ESTIMATE)."""
    p = Path(path)
    if p.is_dir():
        p = p / "durations.json" if (p / "durations.json").is_file() else p / "summary.csv"
    if not p.is_file():
        return {}
    try:
        if p.suffix == ".csv":
            with open(p, newline="") as f:
                return {r["scenario"]: float(r["total_s"]) for r in csv.DictReader(f) if r.get("total_s")}
        data = json.loads(p.read_text())
        return {str(k): float(v) for k, v in data.items()}
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise UsageError(f"cannot read durations from {p}: {exc}\n"
                         "    hint: a durations.json is {\"scenario\": seconds, ...}, as `icelab verify` writes it; "
                         "delete the file to fall back to estimates")


def write_durations(durations: dict[str, float], path: str | Path) -> Path:
    p = Path(path)
    p.write_text(json.dumps({k: round(v, 1) for k, v in sorted(durations.items())}, indent=2) + "\n")
    return p


def default_durations(paths: list[str]) -> Path:
    """Where the set's durations live by default: beside the first set folder's scenarios."""
    first = Path(paths[0]) if paths else Path("scenarios")
    return (first if first.is_dir() else first.parent) / DURATIONS
