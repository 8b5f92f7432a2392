"""Concurrent softphone calls on loopback: how fast one process sets calls up, and the CPU
each active call costs, with every call's audio verified (the far end hears the right tone).

    PYTHONPATH=$PWD .venv/bin/python bench/calls.py 10 25 50

Everything runs in ONE Python process (agent and media edge sides of every call, with
opus encode/decode both ways), against Debian's coturn on 127.0.0.1. In a lab the agents
and the cloud run in different namespaces and processes; this measures the per-call cost.
``bench/calls_lab.py`` does the same in a lab built for real (numbers in docs/benchmarks.md).
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path[:0] = [str(ROOT / "tests" / "agent"), str(ROOT / "tests")]   # coturn and its support module

from coturn import coturn  # noqa: E402

from lab.core.audio import AGENT_TONE, CALLER_TONE  # noqa: E402
from lab.agent.call import CallOptions, place_call  # noqa: E402
from lab.services.media.cloud import CloudConfig, ConnectCloud  # noqa: E402

TALK = 5.0


async def run(n: int, turn, ca_dir: str) -> dict:
    cloud = ConnectCloud(CloudConfig(turn_secret=turn.secret, port=0, ca_dir=ca_dir,
                                     agent_turn_urls=[turn.url("udp")]), log=None)
    await cloud.start()
    calls = [cloud.new_call(f"c{i}") for i in range(n)]
    heard: dict[str, tuple[float, float]] = {}
    real_hangup = cloud.signalling.on_bye

    async def on_bye(call_id):
        heard[call_id] = cloud.edge.caller_heard(call_id)
        await real_hangup(call_id)

    cloud.signalling.on_bye = on_bye
    cpu0, t0 = time.process_time(), time.monotonic()
    outs = await asyncio.gather(*(place_call(c["callId"], c["mediaInfo"], ssl=cloud.ca.client_context(),
                                             options=CallOptions(talk_time=TALK)) for c in calls))
    wall, cpu = time.monotonic() - t0, time.process_time() - cpu0
    await cloud.close()
    errors: dict[str, int] = {}
    for o in outs:
        if o.rtc_error:
            errors[o.rtc_error] = errors.get(o.rtc_error, 0) + 1
            for e in o.timeline:
                if e["name"] == "url_failed":
                    errors[e["reason"]] = errors.get(e["reason"], 0) + 1
    setup = sorted(next(e["t"] for e in o.timeline if e["name"] == "TalkingState") for o in outs
                   if o.reached_talking)
    def first_candidate(o):
        t0 = next(e["t"] for e in o.timeline if e["name"] == "ConnectSignalingAndIceCollectionState")
        return next((e["t"] - t0 for e in o.timeline if e["kind"] == "candidate" and e["name"] == "relay"), None)

    firsts = sorted(x for x in map(first_candidate, outs) if x is not None)
    verified = sum(1 for o, c in zip(outs, calls)
                   if o.ok and abs(o.quality.get("heard_hz", 0) - CALLER_TONE) < 20
                   and abs(heard.get(c["callId"], (0, 0))[0] - AGENT_TONE) < 20)
    lost = sum(o.quality.get("packets_lost", 0) or 0 for o in outs)
    return {"calls": n, "talking": len(setup), "errors": errors, "verified": verified, "lost": lost,
            "first_candidate_median_ms": round(1000 * firsts[len(firsts) // 2], 1) if firsts else None,
            "setup_median_ms": round(1000 * setup[len(setup) // 2], 1) if setup else None,
            "setup_max_ms": round(1000 * setup[-1], 1) if setup else None,
            "calls_per_s": round(len(setup) / setup[-1], 1) if setup else None,
            "cpu_s": round(cpu, 1), "wall_s": round(wall, 1),
            "cpu_per_call_pct": round(100 * cpu / wall / n, 2)}


def main() -> None:
    sizes = [int(a) for a in sys.argv[1:]] or [10, 25, 50]
    print(f"machine: {os.cpu_count()} cores, python {sys.version.split()[0]}; talk {TALK} s per call")
    with coturn(relay_ports=None) as turn, tempfile.TemporaryDirectory() as d:
        for n in sizes:
            print(asyncio.run(run(n, turn, d)), flush=True)


if __name__ == "__main__":
    main()
