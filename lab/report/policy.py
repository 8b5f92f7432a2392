"""What ``icelab policy check`` says: the verdict table (terminal), JSON, JUnit and Markdown.

The table is requirement | verdict | the rule that decided it (its own text, file:line) | what
was observed | the fix (lines in the engineer's own format, and where they go)."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

from rich.markup import escape
from rich.table import Table

from .graph import render as render_topology
from .render import render

PATHS = {"direct": "agents behind your firewall",
         "vpn-full": "full-tunnel VPN: agent -> VPN -> your firewall at the data-centre edge -> internet",
         "vpn-split": "split-tunnel VPN: the bypass list direct from home, the rest through the data centre",
         "vdi": "VDI: the softphone in virtual desktops on the agents' subnet, behind your firewall"}

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


def _rows(d: dict, md: bool) -> list[dict]:
    def cell(text: str) -> str:
        return text.replace("|", "\\|").replace("\n", "<br>") if md else text
    return [{"id": r["id"], "verdict": r["verdict"], "decided": cell(where(r["decided_by"])),
             "observed": cell(r["observed"]), "fix": cell(fix_text(r["fix"])) if (r["fix"] or md) else ""}
            for r in d["requirements"]]


def _pcaps(result) -> list[dict]:
    return [{"name": k, "file": Path(v).name} for k, v in sorted(result.pcaps.items())]


def markdown(result, picture: bool = False) -> str:
    d = result.to_dict()
    return render("policy.md.j2", d=d, rows=_rows(d, True), fixed=result.fixed_text, pcaps=_pcaps(result),
                  picture=picture, path=PATHS.get(d["deployment"].get("path"), "") if picture else "")


def html(result) -> str:
    d = result.to_dict()
    return render("policy.html.j2", d=d, rows=_rows(d, False), fixed=result.fixed_text, pcaps=_pcaps(result),
                  path=PATHS.get(d["deployment"].get("path"), ""))


def topology_mark(result) -> dict | None:
    """The picture marks the way from the first agent to your firewall when a requirement failed there."""
    if result.passed or result.topology is None:
        return None
    dep = result.deployment
    first = dep.caller(dep.oses[0])
    way = [first, "home-lan", "home-router", "isp", "vpn-gw", "agents", "fw"] if (dep.through or dep.vdi) \
        else [first, "agents", "fw"]
    if dep.vdi:
        way = [dep.agent(dep.oses[0]), "agents", "fw"]
    return {"path": way, "stopped_at": {"node": "fw"}, "label": "your policy drops the softphone's packets here"}


def write(result, out_dir: str | Path) -> Path:
    """report.html, report.md, result.json and the topology picture in ``out_dir`` (the
    captures at the firewall are already in its pcap/ folder)."""
    d = Path(out_dir)
    d.mkdir(parents=True, exist_ok=True)
    (d / "result.json").write_text(to_json(result) + "\n")
    (d / "report.md").write_text(markdown(result, picture=result.topology is not None))
    (d / "report.html").write_text(html(result))
    if result.fixed_text is not None:
        (d / ("fixed-" + Path(result.policy.file).name)).write_text(result.fixed_text)
    if result.topology is not None:
        render_topology(result.topology, d / "topology.svg", topology_mark(result))
    return d
