"""Scenario results for people (a verdict table, a Markdown report) and machines (JSON, JUnit)."""

from __future__ import annotations

import json
from pathlib import Path
from xml.sax.saxutils import escape

from rich.table import Table

MARK = {"pass": "[green]PASS[/]", "fail": "[red]FAIL[/]", "error": "[yellow]ERROR[/]"}


def verdict_table(results: list) -> Table:
    """One row per scenario; broken/fixed pairs next to each other."""
    t = Table(title="icelab scenarios", title_justify="left", show_lines=True)
    for col in ("scenario", "variant", "verdict", "what was seen", "time"):
        t.add_column(col, overflow="fold")
    for r in sorted(results, key=lambda r: (r.scenario.pair or r.scenario.name, r.scenario.variant != "broken")):
        seen = "\n".join(f"{'✓' if c.status == 'pass' else '✗' if c.status == 'fail' else '?'} {c.title}: {c.observed}"
                         for c in r.checks)
        if r.error:
            seen = f"[yellow]{r.error}[/]\n" + seen
        t.add_row(r.scenario.name, r.scenario.variant or "", MARK[r.verdict], seen,
                  f"{r.timings.get('total', 0):.1f} s")
    return t


def markdown(result) -> str:
    s = result.scenario
    lines = [f"# {s.title or s.name}", ""]
    if s.claim:
        lines += [f"**Claim tested:** {s.claim}", ""]
    lines += [f"**Verdict: {result.verdict.upper()}**" + (f" ({s.variant} network)" if s.variant else ""), ""]
    if s.description:
        lines += [s.description.strip(), ""]
    if result.error:
        lines += [f"The run could not complete: {result.error}", ""]
    lines += ["## Expectations", "", "| | expectation | observed | what it means |", "|---|---|---|---|"]
    for c in result.checks:
        mark = {"pass": "✓", "fail": "✗", "error": "?"}[c.status]
        lines.append(f"| {mark} | {c.title} | {c.observed} | {c.meaning or ''} |")
    paths = [(k, o) for k, o in result.observations.items() if "requests_path" in o]
    if paths:
        lines += ["", "## Where packets went", ""]
        for key, o in paths:
            lines.append(f"**{key}** ({o['proto']} {o['to']}:{o['port']}): {o.get('requests_where', '')}; "
                         f"{o.get('replies_where', '')}.")
            lines += ["", "| capture point | requests | replies |", "|---|---|---|"]
            replies = {p["at"]: p["count"] for p in o.get("replies_path", [])}
            for p in o["requests_path"]:
                lines.append(f"| {p['at']} ({p['direction']}) | {p['count']} | {replies.get(p['at'], '')} |")
            lines.append("")
        if result.pcaps:
            lines += ["Captures (open them in Wireshark): " + ", ".join(
                f"[{k}](pcap/{Path(v).name})" for k, v in sorted(result.pcaps.items())), ""]
    lines += ["", "## Timeline", "", "| t | source | event |", "|---|---|---|"]
    for e in result.events:
        lines.append(f"| {e.t:.3f} s | {e.source} | {e.what} |")
    lines += ["", "## Topology", "", "![topology](topology.svg)", "",
              f"Lab `{result.lab}` from `{s.topology.file}`; scenario file `{s.file}`.",
              f"Build {result.timings.get('build', 0):.2f} s, timeline {result.timings.get('timeline', 0):.2f} s, "
              f"total {result.timings.get('total', 0):.2f} s.", ""]
    return "\n".join(lines)


def write(result, out_dir: str | Path) -> Path:
    from lab.report.graph import render
    d = Path(out_dir) / result.scenario.name
    d.mkdir(parents=True, exist_ok=True)
    (d / "result.json").write_text(json.dumps(result.to_dict(), indent=2) + "\n")
    (d / "report.md").write_text(markdown(result))
    render(result.scenario.topology, d / "topology.svg")
    return d


def junit(results: list, path: str | Path) -> Path:
    """JUnit XML: a test case per scenario; a failed check is a failure, an error an error."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fails = sum(r.verdict == "fail" for r in results)
    errors = sum(r.verdict == "error" for r in results)
    total = sum(r.timings.get("total", 0) for r in results)
    out = ['<?xml version="1.0" encoding="UTF-8"?>',
           f'<testsuite name="icelab" tests="{len(results)}" failures="{fails}" errors="{errors}" time="{total:.3f}">']
    for r in results:
        name = escape(r.scenario.name, {'"': "&quot;"})
        out.append(f'  <testcase classname="icelab.{escape(r.scenario.pair or "scenario")}" name="{name}" '
                   f'file="{escape(r.scenario.file)}" time="{r.timings.get("total", 0):.3f}">')
        text = "\n".join(f"[{c.status}] {c.title}: {c.observed}" + (f" ({c.meaning})" if c.meaning else "")
                         for c in r.checks)
        if r.verdict == "fail":
            out.append(f'    <failure message="expectations not met">{escape(text)}</failure>')
        elif r.verdict == "error":
            out.append(f'    <error message="{escape(r.error or "an expectation could not be evaluated", {chr(34): "&quot;"})}">'
                       f'{escape(text)}</error>')
        out.append("  </testcase>")
    out.append("</testsuite>")
    p.write_text("\n".join(out) + "\n")
    return p
