"""Concurrent softphone calls in a lab: how fast one lab sets calls up, and the CPU each
active call costs there, with every call's audio verified at both ends.

    sudo PYTHONPATH=$PWD .venv/bin/python bench/calls_lab.py 10 25 50 [--backend coturn]

For each N it builds the starter topology (topologies/agent-lan.yaml) with the cloud
expecting N calls, then starts one agent process per agent host (agent1, agent2), each
placing its half of the calls at once in its own namespace: the real path (agent -> office
LAN -> edge -> ISP -> region -> TURN, signalling over wss to the cloud's process). Each call
talks 5 s. "verified" = the agent heard the caller's 1000 Hz tone and the cloud's caller leg
heard the agent's 600 Hz tone (its hangup line in the cloud's log). CPU is counted for the
lab's own processes during the calls: the agent processes (from the first call's start, their
start-up excluded), the cloud (signalling + media edge) and TURN, from /proc.

Run it under the shared lock on a shared machine: `flock /tmp/icelab.lock ...`.
``--agent-side`` is the mode the agent processes run in (inside the lab; not for people).
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TALK = 5.0
AGENTS = ("agent1", "agent2")


async def _agent_side(ca: str, files: list[str]) -> dict:
    """Inside an agent's namespace: place every call of ``files`` at once."""
    import ssl
    from lab.agent.call import CallOptions, place_call
    ctx = ssl.create_default_context(cafile=ca)
    calls = [json.loads(Path(f).read_text()) for f in files]
    cpu0, t0 = time.process_time(), time.monotonic()
    outs = await asyncio.gather(*(place_call(c["callId"], c["mediaInfo"], ssl=ctx,
                                             options=CallOptions(talk_time=TALK)) for c in calls))
    cpu, wall = time.process_time() - cpu0, time.monotonic() - t0
    res = []
    for c, o in zip(calls, outs):
        tl = o.timeline
        ice = next((e["t"] for e in tl if e["name"] == "ConnectSignalingAndIceCollectionState"), None)
        first = next((e["t"] for e in tl if e["kind"] == "candidate" and e["name"] == "relay"), None)
        talking = next((e["t"] for e in tl if e["name"] == "TalkingState"), None)
        res.append({"callId": c["callId"], "ok": o.ok, "rtc_error": o.rtc_error, "talking": talking,
                    "first_candidate": None if first is None or ice is None else first - ice,
                    "heard_hz": o.quality.get("heard_hz"), "lost": o.quality.get("packets_lost"),
                    "received": o.quality.get("packets_received")})
    return {"cpu_s": cpu, "wall_s": wall, "calls": res}


def far_ends(log) -> dict[str, dict]:
    """Each call's hang-up line in the media edge's log: what its caller leg received."""
    from lab.scenario.observations import hangups
    return hangups(Path(log).read_text(errors="replace"))


def cpu_ticks(pid: int) -> int:
    try:
        data = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return 0
    f = data[data.rindex(b")") + 2:].split()
    return int(f[11]) + int(f[12]) + int(f[13]) + int(f[14])   # utime stime cutime cstime



def run(n: int, backend: str) -> dict:
    from lab.core.audio import AGENT_TONE, CALLER_TONE
    from lab.model.validate import load_topology
    from lab.net import Network
    topo = copy.deepcopy(load_topology(ROOT / "topologies" / "agent-lan.yaml", name="callbench"))
    topo.services.setdefault("turn", {})["backend"] = backend
    ids = [f"c{i}" for i in range(1, n + 1)]
    topo.services.setdefault("signalling", {})["calls"] = {i: {} for i in ids}
    tick = os.sysconf("SC_CLK_TCK")
    with Network(topo) as net:
        d = net.state.dir
        svc = {rs.service: rs for rs in net.services}
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        procs = []
        for k, agent in enumerate(AGENTS):
            mine = [str(d / "calls" / f"{i}.json") for i in ids[k::len(AGENTS)]]
            procs.append(net.node(agent).popen([sys.executable, str(Path(__file__).resolve()), "--agent-side",
                                                str(d / "pki" / "ca.pem"), *mine],
                                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env))
        # the services' CPU from (about) the moment the agents start placing calls
        base = {name: cpu_ticks(rs.proc.pid) for name, rs in svc.items()}
        t0 = time.monotonic()
        outs = []
        for p in procs:
            out, err = p.communicate(timeout=120)
            try:
                outs.append(json.loads(out.decode().strip().splitlines()[-1]))
            except (ValueError, IndexError):
                raise SystemExit(f"an agent process failed: {err.decode()[-1500:]}")
        wall = time.monotonic() - t0
        time.sleep(0.5)           # the last hangup lines
        svc_cpu = {name: (cpu_ticks(rs.proc.pid) - base[name]) / tick for name, rs in svc.items()}
        far = far_ends(svc["signalling"].log_path)
    calls = [c for o in outs for c in o["calls"]]
    agents_cpu = sum(o["cpu_s"] for o in outs)
    talk_wall = max(o["wall_s"] for o in outs)
    setup = sorted(c["talking"] for c in calls if c["talking"] is not None)
    firsts = sorted(c["first_candidate"] for c in calls if c["first_candidate"] is not None)
    verified = sum(1 for c in calls if c["ok"] and abs((c["heard_hz"] or 0) - CALLER_TONE) < 20
                   and abs((far.get(c["callId"], {}).get("heard_hz") or 0) - AGENT_TONE) < 20)
    errors: dict[str, int] = {}
    for c in calls:
        if c["rtc_error"]:
            errors[c["rtc_error"]] = errors.get(c["rtc_error"], 0) + 1
    lost = (sum(c["lost"] or 0 for c in calls), sum(far.get(c["callId"], {}).get("packets_lost") or 0 for c in calls))
    total_cpu = agents_cpu + sum(svc_cpu.values())
    return {"calls": n, "backend": backend, "talking": len(setup), "verified": verified, "errors": errors,
            "lost_to_agents": lost[0], "lost_to_caller": lost[1],
            "first_candidate_median_ms": round(1000 * firsts[len(firsts) // 2], 1) if firsts else None,
            "setup_median_ms": round(1000 * setup[len(setup) // 2], 1) if setup else None,
            "setup_max_ms": round(1000 * setup[-1], 1) if setup else None,
            "calls_per_s": round(len(setup) / setup[-1], 1) if setup else None,
            "cpu_s": {"agents": round(agents_cpu, 1), **{k: round(v, 1) for k, v in svc_cpu.items()}},
            "wall_s": round(talk_wall, 1), "wall_with_startup_s": round(wall, 1),
            "cpu_per_call_pct": round(100 * total_cpu / talk_wall / n, 2)}


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--agent-side":
        print(json.dumps(asyncio.run(_agent_side(sys.argv[2], sys.argv[3:]))), flush=True)
        return
    ap = argparse.ArgumentParser(prog="bench/calls_lab.py")
    ap.add_argument("sizes", nargs="*", type=int, default=[10, 25, 50])
    ap.add_argument("--backend", choices=("embedded", "coturn"), default="embedded")
    args = ap.parse_args()
    print(f"machine: {os.cpu_count()} cores, python {sys.version.split()[0]}; talk {TALK} s per call; "
          f"{len(AGENTS)} agent processes", flush=True)
    for n in args.sizes:
        print(json.dumps(run(n, args.backend)), flush=True)


if __name__ == "__main__":
    main()
