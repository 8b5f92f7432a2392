"""How many packets per second one shaped link carries per direction, and the shaper's CPU.

Run by hand as root: ``sudo .venv/bin/python bench/shaper.py`` (results into
docs/benchmarks.md). One lab (tests/topologies/shaped-pair.yaml); UDP probes of 200
bytes (an audio packet) offered for 3 s per case, one direction or both at once; the
shaper's CPU time is read from /proc. A case passes when at most 0.1 % is lost.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from lab.model import load_topology                     # noqa: E402
from lab.model.impairment import Impairment             # noqa: E402
from lab.net import Network, shaping                    # noqa: E402
from lab.net.shaper.daemon import socket_path           # noqa: E402

PROBE = [sys.executable, str(ROOT / "tests/udp_probe.py")]
SECONDS = 2.0
SIZE = 200
ADDR = {"left": "10.77.0.1", "right": "10.77.0.2"}


def cpu_seconds(pid: int) -> float:
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run(net, pps: int, both: bool, shaper_pid: int | None) -> dict:
    flows = [("left", "right")] + ([("right", "left")] if both else [])
    count = int(pps * SECONDS)
    sinks = []
    for i, (src, dst) in enumerate(flows):
        p = net.node(dst).popen(PROBE + ["sink", str(7100 + i), "--idle", "1"], stdout=subprocess.PIPE, text=True)
        assert p.stdout.readline().strip() == "ready"
        sinks.append(p)
    cpu0, t0 = (cpu_seconds(shaper_pid) if shaper_pid else 0.0), time.monotonic()
    senders = [net.node(src).popen(PROBE + ["send", ADDR[dst], str(7100 + i), "--count", str(count), "--rate", str(pps),
                                            "--size", str(SIZE)], stdout=subprocess.PIPE, text=True)
               for i, (src, dst) in enumerate(flows)]
    sent = [json.loads(s.communicate(timeout=60)[0]) for s in senders]
    wall = time.monotonic() - t0
    cpu = (cpu_seconds(shaper_pid) - cpu0) if shaper_pid else 0.0
    got = [len(json.loads(p.communicate(timeout=60)[0])["recv"]) for p in sinks]
    achieved = min(count / s["seconds"] for s in sent)
    return {"pps": pps, "achieved": achieved, "directions": len(flows), "delivered": min(got) / count,
            "shaper_cpu": cpu / wall, "wall": wall}


def main() -> int:
    topo = load_topology(ROOT / "tests/topologies/shaped-pair.yaml")
    topo.links[0].impair = None
    rows = []
    with Network(topo) as net:
        rows.append(("unshaped", run(net, 20000, True, None)))
        cases = [("zero impairment (not queued)", Impairment()),
                 ("delay 20ms", Impairment(delay=0.020)),
                 ("delay 20ms, jitter 2ms, loss 1%", Impairment(delay=0.020, jitter=0.002, loss=0.01))]
        for name, imp in cases:
            shaping.set_impairment(net, "left", "right", imp)
            pid = json.loads(_ping(net))["pid"]
            for pps, both in ((20000, False), (20000, True), (40000, False)):
                r = run(net, pps, both, pid)
                if imp.loss:
                    r["delivered"] /= (1 - imp.loss)
                rows.append((name, r))
                print(name, r, flush=True)
    print("\n| case | offered pps per direction | sent pps per direction | directions | delivered | shaper CPU (of one core) |")
    print("|---|---|---|---|---|---|")
    for name, r in rows:
        print(f"| {name} | {r['pps']} | {r['achieved']:.0f} | {r['directions']} | {r['delivered'] * 100:.1f} % | {r['shaper_cpu'] * 100:.0f} % |")
    return 0


def _ping(net) -> str:
    import socket
    with socket.socket(socket.AF_UNIX) as s:
        s.connect(str(socket_path(net.topo.name)))
        s.sendall(b'{"op": "ping"}\n')
        return s.recv(4096).decode()


if __name__ == "__main__":
    sys.exit(main())
