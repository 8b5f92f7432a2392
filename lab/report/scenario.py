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
    for col in ("scenario", "variant", "TURN", "verdict", "what was seen", "time"):
        t.add_column(col, overflow="fold")
    for r in sorted(results, key=lambda r: (r.scenario.pair or r.scenario.name, r.scenario.variant != "broken")):
        seen = "\n".join(f"{'✓' if c.status == 'pass' else '✗' if c.status == 'fail' else '?'} {c.title}: {c.observed}"
                         for c in r.checks)
        if r.error:
            seen = f"[yellow]{r.error}[/]\n" + seen
        t.add_row(r.scenario.name, r.scenario.variant or "", r.turn_backend or "-", MARK[r.verdict], seen,
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
    lines += _calls_markdown(result)
    from .vdi import markdown as vdi_markdown
    lines += vdi_markdown(result.observations)
    lines += ["", "## Timeline", "", "| t | source | event |", "|---|---|---|"]
    for e in result.events:
        lines.append(f"| {e.t:.3f} s | {e.source} | {e.what} |")
    lines += ["", "![timeline](timeline.svg)", "", "## Topology", "", "![topology](topology.svg)", "",
              f"Lab `{result.lab}` from `{s.topology.file}`; scenario file `{s.file}`"
              + (f"; TURN backend: {result.turn_backend}." if result.turn_backend else "."),
              f"Build {result.timings.get('build', 0):.2f} s, timeline {result.timings.get('timeline', 0):.2f} s, "
              f"total {result.timings.get('total', 0):.2f} s.", ""]
    return "\n".join(lines)


def _calls(result) -> list[tuple[str, dict]]:
    return [(k, o) for k, o in result.observations.items() if k.startswith("call:") and o.get("transactions")]


def _calls_markdown(result) -> list[str]:
    """Per call: its STUN/TURN transactions at each capture point, and TURN's log of them."""
    lines: list[str] = []
    for key, o in _calls(result):
        t = o["transactions"]
        if not lines:
            lines += ["", "## Where the calls' STUN/TURN packets went", ""]
        if o.get("diagnosis"):
            lines += [f"**{key} failed:** {o['diagnosis']}.", ""]
        else:
            lines += [f"**{key}**: {t.get('requests_where', '')}" + (f"; {t['replies_where']}" if t.get("replies_where") else "")
                      + ".", ""]
        if t.get("points"):
            lines += ["| capture point | Allocate requests | all requests | answers | transactions |", "|---|---|---|---|---|"]
            for p in t["points"]:
                lines.append(f"| {p['at']} ({p['direction']}) | {p['requests'].get('Allocate', 0)} | "
                             f"{_per_method(p['requests'])} | {_per_method(p['answers'])} | {p['transactions']} |")
            lines.append("")
        if "turn_log" in t:
            rows = t["turn_log"]
            lines += [f"TURN transaction log ({len(rows)} lines from the agent" + (", first 40" if len(rows) > 40 else "")
                      + "):", "", "| t | client | transport | method | outcome | code | latency |", "|---|---|---|---|---|---|---|"]
            for r in rows[:40]:
                lines.append(f"| {r['t']:.3f} s | {r['client']} | {r['transport']} | {r['method']} | {r['outcome']} | "
                             f"{r.get('code') or ''} | {r['latency_ms']} ms |")
            lines.append("")
        elif result.turn_backend == "coturn":
            lines += ["coturn keeps no transaction log here: what TURN answered is known from the captures only.", ""]
    return lines


def _per_method(d: dict) -> str:
    return ", ".join(f"{m} {n}" for m, n in d.items()) or "0"


def topology_mark(result) -> dict | None:
    """What the topology picture marks: the path of the first failed call and where its
    packets stopped; else the first probe whose packets died inside a node."""
    for _key, o in _calls(result):
        t = o["transactions"]
        if not o.get("reached_talking") and t.get("path"):
            return {"path": t["path"], "stopped_at": t.get("stopped_at"), "label": "the call's packets stop here"}
    for _key, o in result.observations.items():
        for where in ("requests_where", "replies_where"):
            text = o.get(where, "") if isinstance(o, dict) else ""
            if "dropped inside " in text and o.get("requests_path"):
                nodes = list(dict.fromkeys(p["at"].split(":")[0] for p in o["requests_path"]))
                node = text.rsplit("dropped inside ", 1)[1].split()[0].rstrip(";,.")
                return {"path": nodes, "stopped_at": {"node": node}, "label": "the probe's packets stop here"}
    return None


def write(result, out_dir: str | Path) -> Path:
    from lab.report.graph import render
    d = Path(out_dir) / result.scenario.name
    d.mkdir(parents=True, exist_ok=True)
    (d / "result.json").write_text(json.dumps(result.to_dict(), indent=2) + "\n")
    (d / "report.md").write_text(markdown(result))
    (d / "report.html").write_text(html(result))
    render(result.scenario.topology, d / "topology.svg", topology_mark(result))
    timeline_chart(result, d / "timeline.svg")
    return d


def write_report(result, out_dir: str | Path) -> Path:
    """result.json, report.md, report.html and pictures of the run in ``out_dir/<scenario>/``
    (was lab.scenario.runner.write_report: the scenario layer returns results, reports
    are written above it)."""
    return write(result, out_dir)


def junit(results: list, path: str | Path, backend_in_names: bool = False) -> Path:
    """JUnit XML: a test case per scenario; a failed check is a failure, an error an error.
    ``backend_in_names``: 'udp3478-open[coturn]', so that runs against both TURN backends
    can be told apart when CI merges their reports."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fails = sum(r.verdict == "fail" for r in results)
    errors = sum(r.verdict == "error" for r in results)
    total = sum(r.timings.get("total", 0) for r in results)
    out = ['<?xml version="1.0" encoding="UTF-8"?>',
           f'<testsuite name="icelab" tests="{len(results)}" failures="{fails}" errors="{errors}" time="{total:.3f}">']
    for r in results:
        shown = r.scenario.name + (f"[{r.turn_backend}]" if backend_in_names and r.turn_backend else "")
        name = escape(shown, {'"': "&quot;"})
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


def timeline_chart(result, path: str | Path) -> Path:
    """The run on a time axis: one lane per source (runner, each probe, later each call),
    a bar for each action from its start to its last event, markers for events."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams["svg.fonttype"] = "none"
    lanes: list[str] = []
    for e in result.events:
        if e.source not in lanes:
            lanes.append(e.source)
    starts = {e.what.split(" ", 1)[-1]: e.t for e in result.events if e.source == "runner"}
    end = max((e.t for e in result.events), default=1.0) or 1.0
    fig, ax = plt.subplots(figsize=(9, 0.55 * len(lanes) + 1.2))
    for i, lane in enumerate(lanes):
        y = len(lanes) - 1 - i
        evs = [e for e in result.events if e.source == lane]
        if lane != "runner":
            name = lane.split(":", 1)[-1]
            t0 = starts.get(name, evs[0].t)
            status = _lane_status(result, lane)
            face, edge = {"pass": ("#bbf7d0", "#15803d"), "fail": ("#fecaca", "#b91c1c"),
                          "error": ("#fef08a", "#a16207"), None: ("#e2e8f0", "#64748b")}[status]
            ax.barh(y, evs[-1].t - t0, left=t0, height=0.35, color=face, edgecolor=edge)
        for e in evs:
            ax.plot([e.t], [y], marker="|" if lane == "runner" else "o", color="#0f172a", ms=9 if lane == "runner" else 4)
            if lane != "runner":
                ax.annotate(e.what, (e.t, y), xytext=(4, 6), textcoords="offset points", fontsize=7, color="#334155")
    ax.set_yticks(range(len(lanes)), list(reversed(lanes)), fontsize=8)
    ax.set_xlim(-0.02 * end, end * 1.35)
    ax.set_xlabel("seconds since the timeline started")
    ax.grid(axis="x", color="#e5e7eb")
    ax.set_title(f"{result.scenario.name}: timeline ({result.verdict})", loc="left", fontsize=10)
    fig.tight_layout()
    p = Path(path)
    fig.savefig(p)
    plt.close(fig)
    return p


def _lane_status(result, lane: str) -> str | None:
    """A lane is green when every expectation about it held, red when one did not."""
    statuses = {c.status for c in result.checks if c.about == lane}
    for s in ("error", "fail", "pass"):
        if s in statuses:
            return s
    return None


def html(result) -> str:
    """The report as one HTML page (pictures and captures next to it in the folder)."""
    from html import escape as h
    s = result.scenario
    colour = {"pass": "#15803d", "fail": "#b91c1c", "error": "#a16207"}[result.verdict]
    rows = "".join(
        f"<tr class='{c.status}'><td>{ {'pass': '✓', 'fail': '✗', 'error': '?'}[c.status] }</td><td>{h(c.title)}</td>"
        f"<td>{h(c.observed)}</td><td>{h(c.meaning or '')}</td></tr>" for c in result.checks)
    paths = ""
    for key, o in result.observations.items():
        if "requests_path" not in o:
            continue
        replies = {p["at"]: p["count"] for p in o.get("replies_path", [])}
        cells = "".join(f"<tr><td>{h(p['at'])} ({p['direction']})</td><td>{p['count']}</td><td>{replies.get(p['at'], '')}</td></tr>"
                        for p in o["requests_path"])
        paths += (f"<h3>{h(key)}: {h(o['proto'])} {h(o['to'])}:{o['port']}</h3><p>{h(o.get('requests_where', ''))}; "
                  f"{h(o.get('replies_where', ''))}.</p><table><tr><th>capture point</th><th>requests</th>"
                  f"<th>replies</th></tr>{cells}</table>")
    calls = ""
    for key, o in _calls(result):
        t = o["transactions"]
        head = (f"<p><b>{h(key)} failed:</b> {h(o['diagnosis'])}.</p>" if o.get("diagnosis") else
                f"<p><b>{h(key)}</b>: {h(t.get('requests_where', ''))}{'; ' + h(t['replies_where']) if t.get('replies_where') else ''}.</p>")
        cells = "".join(f"<tr><td>{h(p['at'])} ({p['direction']})</td><td>{p['requests'].get('Allocate', 0)}</td>"
                        f"<td>{h(_per_method(p['requests']))}</td><td>{h(_per_method(p['answers']))}</td>"
                        f"<td>{p['transactions']}</td></tr>" for p in t.get("points", []))
        calls += head + ("<table><tr><th>capture point</th><th>Allocate requests</th><th>all requests</th><th>answers</th>"
                         f"<th>transactions</th></tr>{cells}</table>" if cells else "")
        if "turn_log" in t:
            logrows = "".join(f"<tr><td>{r['t']:.3f} s</td><td>{h(r['client'])}</td><td>{h(r['transport'])}</td>"
                              f"<td>{h(r['method'])}</td><td>{h(r['outcome'])}</td><td>{r.get('code') or ''}</td>"
                              f"<td>{r['latency_ms']} ms</td></tr>" for r in t["turn_log"][:40])
            calls += (f"<p>TURN transaction log ({len(t['turn_log'])} lines from the agent):</p><table><tr><th>t</th>"
                      "<th>client</th><th>transport</th><th>method</th><th>outcome</th><th>code</th><th>latency</th></tr>"
                      f"{logrows}</table>")
        elif result.turn_backend == "coturn":
            calls += "<p>coturn keeps no transaction log here: what TURN answered is known from the captures only.</p>"
    pcaps = ", ".join(f"<a href='pcap/{h(Path(v).name)}'>{h(k)}</a>" for k, v in sorted(result.pcaps.items()))
    events = "".join(f"<tr><td>{e.t:.3f} s</td><td>{h(e.source)}</td><td>{h(e.what)}</td></tr>" for e in result.events)
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>{h(s.title or s.name)}</title>
<style>
body {{ font: 15px/1.45 system-ui, sans-serif; max-width: 1100px; margin: 2em auto; color: #0f172a; padding: 0 1em }}
.verdict {{ font-size: 1.4em; font-weight: 700; color: {colour} }}
table {{ border-collapse: collapse; margin: .6em 0 }} td, th {{ border: 1px solid #cbd5e1; padding: .3em .6em; vertical-align: top }}
tr.fail td:first-child {{ color: #b91c1c }} tr.pass td:first-child {{ color: #15803d }} tr.error td:first-child {{ color: #a16207 }}
img {{ max-width: 100%; border: 1px solid #e2e8f0 }} .claim {{ background: #f1f5f9; padding: .5em .8em }}
</style></head><body>
<h1>{h(s.title or s.name)}</h1>
{f"<p class='claim'><b>Claim tested:</b> {h(s.claim)}</p>" if s.claim else ""}
<p class="verdict">{result.verdict.upper()}{f" ({h(s.variant)} network)" if s.variant else ""}</p>
{f"<p>{h(s.description)}</p>" if s.description else ""}
{f"<p><b>The run could not complete:</b> {h(result.error)}</p>" if result.error else ""}
<h2>Expectations</h2><table><tr><th></th><th>expectation</th><th>observed</th><th>what it means</th></tr>{rows}</table>
{f"<h2>Where packets went</h2>{paths}<p>Captures (Wireshark): {pcaps}</p>" if paths else ""}
{f"<h2>Where the calls' STUN/TURN packets went</h2>{calls}" if calls else ""}
<h2>Timeline</h2><img src="timeline.svg" alt="timeline"><table><tr><th>t</th><th>source</th><th>event</th></tr>{events}</table>
<h2>Topology</h2><img src="topology.svg" alt="topology">
<p>Lab <code>{h(result.lab)}</code> from <code>{h(s.topology.file)}</code>; scenario <code>{h(s.file)}</code>{f"; TURN backend: {h(result.turn_backend)}" if result.turn_backend else ""}.
Build {result.timings.get('build', 0):.2f} s, timeline {result.timings.get('timeline', 0):.2f} s, total {result.timings.get('total', 0):.2f} s.</p>
</body></html>
"""
