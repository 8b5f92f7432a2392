"""A set's results on one page: what a trainer hands out after `icelab verify`.

`out/index.html` puts each claim's broken and fixed scenario side by side (verdict, what was
seen, a link to each full report); `out/summary.csv` is the same a row per scenario, for a
spreadsheet or a CI dashboard. Both are written next to the per-scenario folders.
"""

from __future__ import annotations

import csv
import platform
import time
from pathlib import Path

from .render import render

COLUMNS = ("scenario", "pair", "variant", "verdict", "checks_passed", "checks", "first_problem",
           "build_s", "total_s", "claim", "report")
_MARK = {"pass": "✓", "fail": "✗", "error": "?"}


def _first_problem(result) -> str:
    if result.error:
        return result.error
    bad = next((c for c in result.checks if c.status != "pass"), None)
    return f"{bad.title}: {bad.observed}" if bad else ""


def rows(results: list) -> list[dict]:
    out = []
    for r in sorted(results, key=lambda r: (r.scenario.pair or r.scenario.name, r.scenario.variant != "broken")):
        s = r.scenario
        out.append({"scenario": s.name, "pair": s.pair or "", "variant": s.variant or "", "verdict": r.verdict,
                    "checks_passed": sum(c.status == "pass" for c in r.checks), "checks": len(r.checks),
                    "first_problem": _first_problem(r), "build_s": round(r.timings.get("build", 0.0), 2),
                    "total_s": round(r.timings.get("total", 0.0), 2), "claim": s.claim or "",
                    "report": f"{s.name}/report.html"})
    return out


def write_csv(results: list, path: Path) -> Path:
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=COLUMNS)
        w.writeheader()
        w.writerows(rows(results))
    return path


def _slot(results: list, table: dict) -> dict:
    """One table cell: the scenarios of one variant of a pair (a pair may have several broken ones)."""
    return {"verdict": "pass" if all(r.verdict == "pass" for r in results) else "fail",
            "scenarios": [{"result": r, "row": table[r.scenario.name],
                           "checks": [{"status": c.status, "mark": _MARK[c.status], "title": c.title,
                                       "observed": c.observed} for c in r.checks]} for r in results]}


def write_html(results: list, path: Path) -> Path:
    """Pairs as rows (claim, broken, fixed); scenarios without a pair get a row of their own."""
    by_row: dict[str, dict] = {}
    table = {r["scenario"]: r for r in rows(results)}
    for r in sorted(results, key=lambda r: r.scenario.name):
        s = r.scenario
        key = s.pair or s.name
        slot = s.variant if s.variant in ("broken", "fixed") else "other"
        by_row.setdefault(key, {"claim": s.claim or s.title or "", "broken": [], "fixed": [], "other": []})
        by_row[key][slot].append(r)
    lines = []
    for key, row in sorted(by_row.items()):
        if row["other"]:
            lines.append({"key": key, "claim": row["claim"], "cells": [_slot(row["other"], table), None]})
        if row["broken"] or row["fixed"]:
            lines.append({"key": key, "claim": row["claim"],
                          "cells": [_slot(row[v], table) if row[v] else None for v in ("broken", "fixed")]})
    path.write_text(render("index.html.j2", rows=lines, passed=sum(r.verdict == "pass" for r in results),
                           total=len(results), when=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                           host=platform.node(), platform=platform.platform(terse=True)))
    return path


def write_index(results: list, out_dir: str | Path) -> Path:
    d = Path(out_dir)
    d.mkdir(parents=True, exist_ok=True)
    write_csv(results, d / "summary.csv")
    return write_html(results, d / "index.html")
