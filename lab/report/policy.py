"""What ``icelab policy check`` says: the verdict table (terminal), JSON, JUnit and Markdown.

The table is requirement | verdict | the rule that decided it (its own text, file:line) | what
was observed | the fix (lines in the engineer's own format, and where they go)."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

from rich.markup import escape
from rich.table import Table

from .render import render

STYLE = {"pass": "green", "fail": "red", "untested": "yellow"}


def where(decided: dict | None) -> str:
    if not decided:
        return "-"
    place = decided["file"] + (f":{decided['line']}" if decided.get("line") else "")
    return f"{decided['text']}  ({place})"


def fix_text(fix: dict | None) -> str:
    if not fix:
        return "-"
    before = fix["before"]
    at = (f"before {before['file']}:{before['line']}" if before.get("line") else f"at the {before['text']}")
    state = "verified" if fix.get("verified") else "NOT verified (the re-run still failed)"
    return "\n".join(fix["lines"]) + f"\n({at}; {state})"


def table(result) -> Table:
    d = result.to_dict()
    t = Table(title=f"policy [bold]{escape(d['file'])}[/] ({d['format']}): agents {d['deployment']['agents']}, "
                    f"{', '.join(d['deployment']['os'])}, {escape(d['deployment']['region'])}",
              title_justify="left", show_lines=True)
    for col in ("requirement", "verdict", "deciding rule", "observed", "fix"):
        t.add_column(col, overflow="fold")
    for r in d["requirements"]:
        st = STYLE.get(r["verdict"], "")
        t.add_row(r["id"], f"[{st}]{r['verdict']}[/]", escape(where(r["decided_by"])), escape(r["observed"]),
                  escape(fix_text(r["fix"])))
    return t


def extra_lines(result) -> list[str]:
    """Below the table: rules broader than needed, rules the softphone never reached."""
    lines = []
    for b in result.beyond:
        lines.append(f"beyond what is needed: {b['text']}  ({b['file']}:{b['line']}): {b['why']}")
    for n in result.never_hit:
        lines.append(f"never hit by the softphone: {n['text']}  ({n['file']}:{n['line']})")
    return lines


def to_json(result) -> str:
    return json.dumps(result.to_dict(), indent=2)


def junit(result, path: str | Path) -> Path:
    """One test case per requirement; a failing one is a failure, an untested one skipped."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    reqs = result.requirements
    suite = ET.Element("testsuite", {"name": f"icelab policy {result.policy.file}", "tests": str(len(reqs)),
                                     "failures": str(sum(r.verdict == "fail" for r in reqs)),
                                     "skipped": str(sum(r.verdict == "untested" for r in reqs)),
                                     "time": f"{result.timings.get('total', 0):.3f}"})
    for r in reqs:
        case = ET.SubElement(suite, "testcase", {"classname": "icelab.policy", "name": r.id,
                                                 "file": result.policy.file})
        text = f"deciding rule: {where(r.decided_by)}\nobserved: {r.observed}\nfix: {fix_text(r.fix)}"
        if r.verdict == "fail":
            ET.SubElement(case, "failure", {"message": r.observed}).text = text
        elif r.verdict == "untested":
            ET.SubElement(case, "skipped", {"message": r.observed})
        else:
            ET.SubElement(case, "system-out").text = text
    ET.indent(suite, space="  ")
    p.write_text('<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(suite, encoding="unicode") + "\n")
    return p


def markdown(result) -> str:
    d = result.to_dict()
    rows = [{"id": r["id"], "verdict": r["verdict"], "decided": where(r["decided_by"]).replace("|", "\\|"),
             "observed": r["observed"].replace("|", "\\|"),
             "fix": fix_text(r["fix"]).replace("|", "\\|").replace("\n", "<br>")} for r in d["requirements"]]
    return render("policy.md.j2", d=d, rows=rows, fixed=result.fixed_text)
