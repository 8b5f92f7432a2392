"""What an OpenVPN tunnel costs in the lab: time to come up, RTT, bulk TCP throughput.

Run as root, under the shared lock on shared machines:
`sudo flock /tmp/icelab.lock .venv/bin/python bench/vpn_tunnel.py`. Uses
tests/topologies/vpn-home.yaml (agent1 full/udp, agent2 split/udp with signalling
bypassed, agent3 full/tcp). No impairments: the differences are OpenVPN's own (userspace
crypto, the extra hops through the data centre). Prints a Markdown table for
docs/benchmarks.md.
"""

from __future__ import annotations

import platform
import re
import statistics
import subprocess
import time
from pathlib import Path

from lab.model import load_topology
from lab.net import Network

ROOT = Path(__file__).resolve().parent.parent
SIGNALLING = "203.0.113.3"
MB = 64


def throughput(net, agent: str) -> float:
    """MB/s of one TCP transfer from the agent to the signalling host."""
    sink = net.node("signalling").popen(["socat", "-u", "TCP-LISTEN:5001,reuseaddr", "OPEN:/dev/null"])
    time.sleep(0.2)
    t0 = time.monotonic()
    net.cmd(agent, f"head -c {MB}M /dev/zero | socat -u - TCP:{SIGNALLING}:5001")
    sink.wait(timeout=60)
    return MB / (time.monotonic() - t0)


def main() -> None:
    topo = load_topology(ROOT / "tests/topologies/vpn-home.yaml")
    ups = []
    rows = {}
    for run in range(3):
        with Network(topo) as net:
            ups.append(net.timings["vpn"])
            if run == 0:
                for agent in ("agent1", "agent2", "agent3"):
                    out = net.cmd(agent, f"ping -n -q -c 50 -i 0.02 {SIGNALLING}")
                    rtt = float(re.search(r"= [\d.]+/([\d.]+)/", out).group(1))
                    rows[agent] = (rtt, throughput(net, agent))
    print(f"Machine: {platform.node()}, {platform.release()}, {time.strftime('%Y-%m-%d')}")
    print(f"tunnels up (2 servers, 3 clients): median {statistics.median(ups):.2f} s "
          f"(min {min(ups):.2f}, max {max(ups):.2f})\n")
    print("| agent | tunnel | RTT to signalling | TCP throughput |\n|---|---|---|---|")
    for agent, (rtt, mbs) in rows.items():
        v = topo.nodes[agent].vpn
        print(f"| {agent} | {v.mode} / {v.proto} {v.port} | {rtt:.3f} ms | {mbs:.0f} MB/s |")


if __name__ == "__main__":
    main()
