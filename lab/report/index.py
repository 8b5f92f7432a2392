"""A set's results on one page: what a trainer hands out after `icelab verify`.

`out/index.html` puts each claim's broken and fixed scenario side by side (verdict, what was
seen, a link to each full report); `out/summary.csv` is the same a row per scenario, for a
spreadsheet or a CI dashboard. Both are written next to the per-scenario folders.
"""

from __future__ import annotations

import csv
import platform
import time
from html import escape as h
from pathlib import Path

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


def _one(result, row: dict) -> str:
    seen = "".join(f"<li class='{c.status}'>{_MARK[c.status]} {h(c.title)}: {h(c.observed)}</li>" for c in result.checks)
    if result.error:
        seen = f"<li class='error'>? {h(result.error)}</li>" + seen
    return (f"<div class='{result.verdict}'><a href='{h(row['report'])}'><b>{h(row['scenario'])}</b></a> "
            f"<span class='v'>{result.verdict.upper()}</span> <small>{row['total_s']:.1f} s</small><ul>{seen}</ul></div>")


def _cell(results: list, table: dict) -> str:
    """One table cell: the scenarios of one variant of a pair (a pair may have several broken ones)."""
    if not results:
        return "<td class='none'>-</td>"
    verdict = "pass" if all(r.verdict == "pass" for r in results) else "fail"
    return f"<td class='{verdict}'>" + "".join(_one(r, table[r.scenario.name]) for r in results) + "</td>"


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
    body = ""
    for key, row in sorted(by_row.items()):
        head = f"<tr><td><b>{h(key)}</b><br><small>{h(row['claim'])}</small></td>"
        if row["other"]:
            body += head + _cell(row["other"], table) + "<td class='none'>-</td></tr>"
        if row["broken"] or row["fixed"]:
            body += head + _cell(row["broken"], table) + _cell(row["fixed"], table) + "</tr>"
    passed = sum(r.verdict == "pass" for r in results)
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    path.write_text(f"""<!doctype html>
<html><head><meta charset="utf-8"><title>icelab: {passed} of {len(results)} scenarios pass</title>
<style>
body {{ font: 15px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 1400px; color: #0f172a; padding: 0 1em }}
table {{ border-collapse: collapse; width: 100% }} td, th {{ border: 1px solid #cbd5e1; padding: .4em .6em; vertical-align: top }}
div.pass .v {{ color: #15803d; font-weight: 700 }} div.fail .v {{ color: #b91c1c; font-weight: 700 }}
div.error .v {{ color: #a16207; font-weight: 700 }} td.none {{ color: #94a3b8 }} td div + div {{ margin-top: .6em }}
ul {{ margin: .3em 0 0 1em; padding: 0 }} li.fail {{ color: #b91c1c }} li.error {{ color: #a16207 }}
th {{ background: #f1f5f9; text-align: left }}
</style></head><body>
<h1>icelab: {passed} of {len(results)} scenarios pass</h1>
<p>For a broken network, PASS means it failed the way agents see it; for a fixed one, that the
call works. Each name links to its full report (timeline, where packets died, firewall
counters, captures). Run {h(when)} on {h(platform.node())} ({h(platform.platform(terse=True))});
the same as a table: <a href="summary.csv">summary.csv</a>.</p>
<table><tr><th>claim</th><th>broken network</th><th>fixed network</th></tr>{body}</table>
</body></html>
""")
    return path


def write_index(results: list, out_dir: str | Path) -> Path:
    d = Path(out_dir)
    d.mkdir(parents=True, exist_ok=True)
    write_csv(results, d / "summary.csv")
    return write_html(results, d / "index.html")
