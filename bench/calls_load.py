"""Concurrent calls at scale: the light media path (``media: light``) against the full one,
side by side in the same lab and the same process model, every call's audio verified both ways.

    sudo PYTHONPATH=$PWD .venv/bin/python bench/calls_load.py [--topology contact-centre]
        [--full 40] [--light 40 200] [--talk 10] [--over 5] [--rounds 1]

For each size it builds the topology with the cloud expecting N calls, then one
``python -m lab.agent.load`` process (one asyncio loop) places the N calls from N agent hosts
(each call in its host's namespace), their starts spread over ``--over`` seconds, each talking
``--talk`` seconds. "Verified" = the agent reached Talking and heard the caller's tone (the
full path: decoded and analysed; the light path: every payload one of the caller tone's
frames, in order) and the media edge's caller leg heard the agent's tone (its hangup line).
CPU is the load process (after its start-up) + the media edge/signalling + TURN, from /proc,
over the time all N calls were talking together, divided by N: the cost of one active call.

Run it under the shared lock on a shared machine: `flock /tmp/icelab.lock ...`.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from calls_lab import cpu_ticks, far_ends  # noqa: E402  (bench/ is the script's own folder)




def run(topology: str, n: int, media: str, talk: float, over: float, dump: str | None = None) -> dict:
    from lab.core.audio import AGENT_TONE, CALLER_TONE
    from lab.model.validate import load_topology
    from lab.net import Network
    topo = copy.deepcopy(load_topology(ROOT / "topologies" / f"{topology}.yaml", name="loadbench"))
    agents = [name for name, node in topo.nodes.items() if node.role == "agent"]
    if n > len(agents):
        raise SystemExit(f"{topology} has {len(agents)} agents, fewer than {n} calls")
    # one call per agent host, taken across the floors (every k-th agent)
    step = len(agents) // n
    chosen = agents[::step][:n]
    ids = [f"load-{a}" for a in chosen]
    topo.services.setdefault("signalling", {})["calls"] = {i: {"media": media} for i in ids}
    tick = os.sysconf("SC_CLK_TCK")
    with Network(topo) as net:
        d = net.state.dir
        svc = {rs.service: rs for rs in net.services}
        cfg = d / f"load-{media}-{n}.json"
        cfg.write_text(json.dumps({
            "ca": str(d / "pki" / "ca.pem"), "talk_time": talk, "media": media,
            "calls": [{"name": a, "call": str(d / "calls" / f"{i}.json"), "netns": net.node(a).pid,
                       "at": round(over * k / n, 3)} for k, (a, i) in enumerate(zip(chosen, ids))]}))
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        errf = open(d / f"load-{media}-{n}.stderr", "w+b")
        proc = subprocess.Popen([sys.executable, "-m", "lab.agent.load", "--config", str(cfg)], env=env,
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=errf)
        assert json.loads(proc.stdout.readline()).get("ready")
        got: list[bytes] = []
        reader = threading.Thread(target=lambda: got.extend(proc.stdout), daemon=True)
        reader.start()
        base = {name: cpu_ticks(rs.proc.pid) for name, rs in svc.items()}
        t0 = time.monotonic()
        proc.stdin.write(b"go\n")
        proc.stdin.close()
        proc.stdin = None       # communicate() must not flush it again
        # CPU ticks of every process, sampled; the window in which all N calls talked at once
        # is known only afterwards (from the calls' own timelines)
        samples = []
        while proc.poll() is None:
            samples.append((time.monotonic() - t0, cpu_ticks(proc.pid),
                            {k: cpu_ticks(rs.proc.pid) for k, rs in svc.items()}))
            time.sleep(0.2)
        reader.join(10)
        errf.seek(0)
        out, err = b"".join(got), errf.read()
        time.sleep(0.5)
        far = {}
        for rs in svc.values():
            if rs.log_path and Path(rs.log_path).exists():
                far.update(far_ends(Path(rs.log_path)))
        svc_total = {k: (cpu_ticks(rs.proc.pid) - base[k]) / tick for k, rs in svc.items()}
    if dump:
        Path(dump).mkdir(parents=True, exist_ok=True)
        (Path(dump) / f"{media}-{n}.jsonl").write_bytes(out)
        (Path(dump) / f"{media}-{n}.stderr").write_bytes(err)
    lines = [json.loads(x) for x in out.decode().splitlines() if x.startswith("{")]
    calls = [x for x in lines if "call" in x]
    done = next((x for x in lines if x.get("done")), {})
    if len(calls) != n:
        raise SystemExit(f"{len(calls)} of {n} calls reported: {err.decode()[-2000:]}")
    verified, errors = 0, {}
    lost = [0, 0]
    # packets actually sent each way: a starved full path falls behind real time and sends
    # fewer than 50 a second, which would make it look cheaper per call than it is
    sent = [sum((c["outcome"].get("quality") or {}).get("packets_sent") or 0 for c in calls),
            sum((far.get(f"load-{c['call']}") or {}).get("packets_received") or 0 for c in calls)]
    for c in calls:
        o = c["outcome"]
        q = o.get("quality") or {}
        fe = far.get(f"load-{c['call']}", {})
        if o.get("softphone_error") or o.get("rtc_error"):
            key = o.get("softphone_error") or o.get("rtc_error")
            errors[key] = errors.get(key, 0) + 1
        lost[0] += q.get("packets_lost") or 0
        lost[1] += fe.get("packets_lost") or 0
        good = (o.get("ok") and abs((q.get("heard_hz") or 0) - CALLER_TONE) < 20
                and abs((fe.get("heard_hz") or 0) - AGENT_TONE) < 20)
        if media == "light":
            p, fp = q.get("payloads") or {}, fe.get("payloads") or {}
            good = good and p.get("foreign", 1) == 0 and fp.get("foreign", 1) == 0 \
                and p.get("in_sequence") == p.get("matched") and fp.get("in_sequence") == fp.get("matched")
        verified += bool(good)
    talking = [c["t0"] + next((e["t"] for e in c["outcome"]["timeline"] if e["name"] == "TalkingState"), 0)
               for c in calls if c["outcome"].get("reached_talking")]
    lo, hi = (max(talking) + 0.5, min(talking) + talk - 0.5) if talking else (0, 0)
    inside = [x for x in samples if lo <= x[0] <= hi]
    if len(inside) < 2:
        raise SystemExit(f"the calls never all talked at once (window {lo:.1f}-{hi:.1f} s): talk longer or start faster")
    (ta, la, sa), (tb, lb, sb) = inside[0], inside[-1]
    win = tb - ta
    steady = {"load": (lb - la) / tick, **{k: (sb[k] - sa[k]) / tick for k in sb}}
    return {"topology": topology, "media": media, "calls": n, "talking": len(talking), "verified": verified,
            "errors": errors, "lost_to_agents": lost[0], "lost_to_caller": lost[1],
            "steady_window_s": round(win, 2),
            "steady_cpu_s": {k: round(v, 2) for k, v in steady.items()},
            "cpu_per_call_pct": round(100 * sum(steady.values()) / win / n, 2),
            "packets_agents_sent": sent[0], "packets_caller_received": sent[1],
            "packets_per_call_s": round(sent[0] / n / talk, 1),
            # both ways: what the agents sent and about as much coming back
            "cpu_us_per_packet": round(1e6 * sum(steady.values()) / win / n / max(2 * sent[0] / n / talk, 1e-9), 1),
            "whole_run_cpu_s": {"load": done.get("cpu_s"), **{k: round(v, 1) for k, v in svc_total.items()}},
            "load_wall_s": done.get("wall_s"), "loadavg": os.getloadavg()[0]}


def main() -> None:
    ap = argparse.ArgumentParser(prog="bench/calls_load.py")
    ap.add_argument("--topology", default="contact-centre")
    ap.add_argument("--full", nargs="*", type=int, default=[40])
    ap.add_argument("--light", nargs="*", type=int, default=[40, 200])
    ap.add_argument("--talk", type=float, default=10.0)
    ap.add_argument("--over", type=float, default=5.0)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--dump", help="keep each run's call outcomes (JSON lines) in this folder")
    args = ap.parse_args()
    print(f"machine: {os.cpu_count()} cores, python {sys.version.split()[0]}, "
          f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, load {os.getloadavg()}", flush=True)
    for _ in range(args.rounds):
        for media, sizes in (("full", args.full), ("light", args.light)):
            for n in sizes:
                print(json.dumps(run(args.topology, n, media, args.talk, args.over, args.dump)), flush=True)


if __name__ == "__main__":
    main()
