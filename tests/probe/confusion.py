"""The probe's confusion matrix: ``lab.probe`` run inside the agent of each network in
scenarios/ (one lab per network, the scenario's link settings at 0 s, probes only, no
calls). Used by test_confusion.py; ``python tests/probe/confusion.py`` prints the table
for docs/probe.md."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from lab.probe.signatures import SAME_NETWORK, UNSEEN  # noqa: E402
SCENARIOS = ROOT / "scenarios"

#: options beyond the default run, by scenario: the NAT pair's 30 s timeout needs a longer
#: silence than the default run's 8 s (docs/probe.md: what an engineer who suspects NAT
#: timeouts runs); its fixed twin gets the same, so that the test is not one-sided
OPTIONS = {"nat-hold-30s": ["--idle", "35"], "nat-hold-keepalive": ["--idle", "35"]}
#: a network that drops everything (every rule of office-firewall.yaml removed)
DROP_ALL = """name: drop-everything
title: a firewall that drops everything
variant: broken
topology:
  file: {topologies}/office-firewall.yaml
  overrides:
    nodes:
      fw: {{presets: [], rules: []}}
timeline:
  - {{at: 0s, probe: {{name: p, from: agent1, to: turn, proto: stun, port: 3478}}}}
expect:
  - {{probe: p, reached: false}}
"""


def probe_node(scenario) -> str:
    """Where the scenario's softphone (or its first probe) runs: the node probed."""
    from lab.scenario.actions.call import engine_node
    for step in scenario.steps:
        if step.action == "call":
            return engine_node(scenario.topology, step.spec)
        if step.action == "probe":
            return step.spec.from_
    raise ValueError(f"{scenario.name}: no call or probe step names an agent")


def row(path: Path) -> dict:
    from lab.net import Network, shaping
    from lab.scenario.endpoint import TIMEOUT, finish, start
    from lab.scenario.load import load_scenario
    # a name of its own: other labs (other test runs) may be up under the scenario's
    s = load_scenario(path, lab_name=f"pe{os.getpid() % 100000}")
    node = probe_node(s)
    t0 = time.monotonic()
    with Network(s.topology) as net:
        for step in s.steps:
            if step.action == "link" and step.at == 0:
                shaping.change_impairment(net, step.spec.a, step.spec.b, step.spec.settings, step.spec.direction,
                                          clear=step.spec.clear, origin=s.file)
        built = time.monotonic() - t0
        t1 = time.monotonic()
        extra = OPTIONS.get(s.name, [])
        idle = float(extra[extra.index("--idle") + 1]) if "--idle" in extra else 0.0
        result = finish(start(net, node, extra=extra), timeout=TIMEOUT + idle)
        wall = time.monotonic() - t1
    problems = [f for f in result.get("findings", []) if f["severity"] == "problem"]
    broken = s.variant == "broken"
    if "error" in result:
        verdict = "error"
    elif not broken and s.name in SAME_NETWORK:
        twin = SAME_NETWORK[s.name][0]
        verdict = "same network" if problems and all(twin in f["scenarios"] for f in problems) else "confused"
    elif not broken:
        verdict = "right" if not problems else "confused"
    elif s.name in UNSEEN:
        verdict = "cannot be seen" if not problems else "confused"
    else:
        named = problems and all(s.name in f["scenarios"] or s.name == "drop-everything" for f in problems)
        verdict = "right" if named else ("missed" if not problems else "confused")
    m = result.get("measurements", {})
    return {"scenario": s.name, "variant": s.variant, "node": node, "verdict": verdict, "options": " ".join(extra),
            "findings": [f["id"] for f in problems], "notes": [f["id"] for f in result.get("findings", [])
                                                              if f["severity"] == "note"],
            "exit_status": result.get("exit_status"), "probe_s": m.get("duration_s"), "build_s": round(built, 1),
            "wall_s": round(wall, 2),
            "rtt_ms": (m.get("stun") or {}).get("rtt_ms"), "error": result.get("error"), "result": result}


def paths(tmp: Path | None = None) -> list[Path]:
    out = sorted(SCENARIOS.glob("*.yaml"))
    if tmp is not None:
        p = tmp / "drop-everything.yaml"
        p.write_text(DROP_ALL.format(topologies=ROOT / "topologies"))
        out.append(p)
    return out


def table(rows: list[dict]) -> str:
    lines = ["| scenario | variant | probed from | options | problems found | notes | exit | probe s (wall) | verdict |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| `{r['scenario']}` | {r['variant']} | {r['node']} | {r['options'] and '`' + r['options'] + '`'} | "
                     f"{', '.join(r['findings']) or 'none'} | "
                     f"{', '.join(r['notes'])} | {r['exit_status']} | {r['probe_s']} ({r['wall_s']}) | {r['verdict']} |")
    return "\n".join(lines)


if __name__ == "__main__":
    import tempfile
    with tempfile.TemporaryDirectory() as d:
        wanted = sys.argv[1:]
        rows = []
        for p in paths(Path(d)):
            if wanted and p.stem not in wanted:
                continue
            r = row(p)
            rows.append(r)
            print(r["scenario"], r["verdict"], r["findings"], r["notes"], r["probe_s"], r["error"] or "", flush=True)
        print(table(rows))
