"""Scenario results for people (a Markdown and an HTML report, from one template set) and for
machines (JSON, JUnit)."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

from . import browser, vdi
from .graph import render as render_topology
from .render import render

CHECK_MARK = {"pass": "✓", "fail": "✗", "error": "?"}


def sections(result) -> dict:
    """What both report formats show, section by section (templates/report.*.j2)."""
    s = result.scenario
    return {"title": s.title or s.name, "claim": s.claim, "verdict": result.verdict, "variant": s.variant,
            "description": (s.description or "").strip(), "error": result.error,
            "checks": [{"mark": CHECK_MARK[c.status], "status": c.status, "title": c.title, "observed": c.observed,
                        "meaning": c.meaning or ""} for c in result.checks],
            "paths": _paths(result),
            "pcaps": [{"name": k, "file": Path(v).name} for k, v in sorted(result.pcaps.items())],
            "calls": _calls_section(result), "vdi": vdi.calls(result.observations),
            "browser": browser.calls(result.observations), "events": result.events,
            "lab": result.lab, "topology_file": s.topology.file, "scenario_file": s.file,
            "turn_backend": result.turn_backend,
            "timings": {k: result.timings.get(k, 0) for k in ("build", "timeline", "total")}}


def markdown(result) -> str:
    return render("report.md.j2", **sections(result))


def html(result) -> str:
    """The report as one HTML page (pictures and captures next to it in the folder)."""
    return render("report.html.j2", **sections(result))


def _paths(result) -> list[dict]:
    """Per probe: where its requests and replies were seen, capture point by capture point."""
    out = []
    for key, o in result.observations.items():
        if "requests_path" not in o:
            continue
        replies = {p["at"]: p["count"] for p in o.get("replies_path", [])}
        out.append({"key": key, "proto": o["proto"], "to": o["to"], "port": o["port"],
                    "requests_where": o.get("requests_where", ""), "replies_where": o.get("replies_where", ""),
                    "points": [{"at": p["at"], "direction": p["direction"], "requests": p["count"],
                                "replies": replies.get(p["at"], "")} for p in o["requests_path"]]})
    return out


def _calls(result) -> list[tuple[str, dict]]:
    return [(k, o) for k, o in result.observations.items() if k.startswith("call:") and o.get("transactions")]


def _calls_section(result) -> list[dict]:
    """Per call: its STUN/TURN transactions at each capture point, and TURN's log of them."""
    out = []
    for key, o in _calls(result):
        t = o["transactions"]
        log = t.get("turn_log")
        out.append({"key": key, "diagnosis": o.get("diagnosis"), "requests_where": t.get("requests_where", ""),
                    "replies_where": t.get("replies_where") or "",
                    "points": [{"at": p["at"], "direction": p["direction"],
                                "allocate": p["requests"].get("Allocate", 0), "requests": _per_method(p["requests"]),
                                "answers": _per_method(p["answers"]), "transactions": p["transactions"]}
                               for p in t.get("points") or []],
                    "turn_log": None if "turn_log" not in t else [dict(r, code=r.get("code") or "") for r in log[:40]],
                    "turn_log_lines": len(log or []), "coturn": result.turn_backend == "coturn"})
    return out


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
    """result.json, report.md, report.html and the pictures in ``out_dir/<scenario>/``."""
    d = Path(out_dir) / result.scenario.name
    d.mkdir(parents=True, exist_ok=True)
    (d / "result.json").write_text(json.dumps(result.to_dict(), indent=2) + "\n")
    (d / "report.md").write_text(markdown(result))
    (d / "report.html").write_text(html(result))
    render_topology(result.scenario.topology, d / "topology.svg", topology_mark(result))
    timeline_chart(result, d / "timeline.svg")
    return d


def junit(results: list, path: str | Path, backend_in_names: bool = False) -> Path:
    """JUnit XML: a test case per scenario; a failed check is a failure, an error an error.
    ``backend_in_names``: 'udp3478-open[coturn]', so that runs against both TURN backends
    can be told apart when CI merges their reports."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    suite = ET.Element("testsuite", {"name": "icelab", "tests": str(len(results)),
                                     "failures": str(sum(r.verdict == "fail" for r in results)),
                                     "errors": str(sum(r.verdict == "error" for r in results)),
                                     "time": f"{sum(r.timings.get('total', 0) for r in results):.3f}"})
    for r in results:
        shown = r.scenario.name + (f"[{r.turn_backend}]" if backend_in_names and r.turn_backend else "")
        case = ET.SubElement(suite, "testcase", {"classname": f"icelab.{r.scenario.pair or 'scenario'}", "name": shown,
                                                 "file": r.scenario.file, "time": f"{r.timings.get('total', 0):.3f}"})
        text = "\n".join(f"[{c.status}] {c.title}: {c.observed}" + (f" ({c.meaning})" if c.meaning else "")
                         for c in r.checks)
        if r.verdict == "fail":
            ET.SubElement(case, "failure", {"message": "expectations not met"}).text = text
        elif r.verdict == "error":
            ET.SubElement(case, "error", {"message": r.error or "an expectation could not be evaluated"}).text = text
    ET.indent(suite, space="  ")
    p.write_text('<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(suite, encoding="unicode") + "\n")
    return p


def timeline_chart(result, path: str | Path) -> Path:
    """The run on a time axis: one lane per source (runner, each probe, later each call),
    a bar for each action from its start to its last event, markers for events."""
    # matplotlib takes half a second to import: only runs that write reports pay for it
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
