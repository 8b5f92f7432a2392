"""`icelab merge`: the results of N shards (or N machines) as one set: one index.html, one
summary.csv, one JUnit file, and the durations the next split balances by; and the shards of a
sweep (`icelab sweep --shard K/N`) as the one sweep an unsharded run writes.

Each shard's output folder holds its summary.csv (which scenarios that shard ran) and a folder
per scenario with its result.json. The merge reads those, never the scenario files: the
machine that merges need not have the set, only the shards' artifacts.
"""

from __future__ import annotations

import csv
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

from lab.core.errors import UsageError
from lab.scenario.expect import Check
from lab.scenario.runner import Event, Result
from lab.scenario.sweep import Sweep, merge_sweeps

from . import sweep as sweep_report


@dataclass(frozen=True)
class RecordedScenario:
    """A scenario as its result.json describes it: what the set page and JUnit show."""

    name: str
    file: str
    title: str | None = None
    claim: str | None = None
    pair: str | None = None
    variant: str | None = None


def read_shard(folder: str | Path) -> list[Result]:
    """The results one shard wrote into ``folder`` (`icelab verify -o folder`)."""
    d = Path(folder)
    summary = d / "summary.csv"
    if not summary.is_file():
        raise UsageError(f"{d} has no summary.csv\n    hint: give the folders `icelab verify -o FOLDER` "
                         "wrote, one per shard (or those of `icelab sweep --shard K/N -o FOLDER`)")
    with open(summary, newline="") as f:
        names = [r["scenario"] for r in csv.DictReader(f)]
    results = []
    for name in names:
        p = d / name / "result.json"
        try:
            data = json.loads(p.read_text())
        except (OSError, ValueError) as exc:
            raise UsageError(f"{p}: cannot read the result of '{name}' ({exc})\n"
                             "    hint: copy each shard's whole output folder, scenario folders included")
        s = RecordedScenario(data["scenario"], data.get("file", ""), data.get("title"), data.get("claim"),
                             data.get("pair"), data.get("variant"))
        r = Result(s, data["lab"], data["verdict"], [Check(**c) for c in data["checks"]], data["observations"],
                   [Event(**e) for e in data["events"]], data["timings"], data["error"],
                   pcaps=data.get("pcaps", {}), turn_backend=data.get("turn_backend"))
        r.report_dir = str(d / name)
        results.append(r)
    return results


def merge(folders: list[str | Path], out: str | Path) -> list[Result]:
    """Every shard's results, each scenario's folder copied into ``out`` (unless it is there
    already); a scenario two shards both ran is an error, not a silent choice."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    seen: dict[str, Path] = {}
    results = []
    for folder in folders:
        for r in read_shard(folder):
            name = r.scenario.name
            if name in seen:
                raise UsageError(f"'{name}' is in both {seen[name]} and {folder}\n"
                                 "    hint: each scenario belongs to one shard: were two shards run with the same K, "
                                 "or one folder given twice?")
            seen[name] = Path(folder)
            src, dst = Path(r.report_dir), out / name
            if src.resolve() != dst.resolve():
                if dst.exists():
                    shutil.rmtree(dst)
                shutil.copytree(src, dst)
            r.report_dir = str(dst)
            results.append(r)
    return results


def sweep_shards(folder: str | Path) -> list[Path]:
    """The sharded sweep.json files a folder holds: ``folder/sweep-*/sweep.json`` (the folder
    `icelab sweep --shard K/N -o FOLDER` wrote) or ``folder/sweep.json`` (its sweep folder)."""
    d = Path(folder)
    found = [d / "sweep.json"] if (d / "sweep.json").is_file() else sorted(d.glob("sweep-*/sweep.json"))
    return [p for p in found if "shard" in _read_json(p)]


def _read_json(p: Path) -> dict:
    try:
        return json.loads(p.read_text())
    except (OSError, ValueError) as exc:
        raise UsageError(f"{p}: cannot read it ({exc})\n    hint: copy each shard's whole output folder")


def merge_sweep_folders(folders: list[str | Path], out: str | Path) -> list[Path]:
    """Each sweep found in the folders' shards merged and written into ``out/sweep-<scenario>/``
    (json, csv, md, png, svg); the folders written."""
    by_scenario: dict[str, list[tuple[str, Sweep]]] = {}
    for folder in folders:
        for p in sweep_shards(folder):
            s = Sweep.from_dict(_read_json(p))
            by_scenario.setdefault(s.scenario, []).append((str(p.parent), s))
    return [sweep_report.write(merge_sweeps(parts), Path(out)) for _, parts in sorted(by_scenario.items())]
