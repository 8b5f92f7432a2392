"""Build and teardown time of labs of 10 to 500 hosts, side by side with raw Mininet.

Run as root: `sudo make bench` (or `sudo .venv/bin/python bench/build_teardown.py`).
Prints a Markdown table to paste into docs/benchmarks.md with the machine and date.

"raw Mininet" builds the same nodes and links with Mininet's own API, as a Mininet script
would: ``addHost`` for every node (a lan too: Mininet's switches need Open vSwitch), ``addLink``
for every link, ``build()`` (which gives each host an address). The lab's build is measured
twice: the network alone (``start_services=False``: the same nodes and links, configured and
forwarding) and the whole lab (services listening too). Runs alternate between raw Mininet and
the lab, so that both see the same load on a shared machine.

Targets (issue #2): starter topology up in under 1.5 s, 100 hosts in under 10 s; (issue #18):
every size at most 1.0x raw Mininet's time, the 500-agent contact centre up in 15 s.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))         # the synthetic topologies live with the tests

from mininet.net import Mininet                 # noqa: E402
from mininet.node import Host                   # noqa: E402

from lab.model import load_topology             # noqa: E402
from lab.net import Network                     # noqa: E402
from synthetic import office_grid               # noqa: E402


def lab_once(topo, services: bool) -> tuple[float, float, dict]:
    net = Network(topo, start_services=services)
    t0 = time.monotonic()
    try:
        net.build()
    except BaseException:
        net.teardown()
        raise
    t1 = time.monotonic()
    net.teardown()
    return t1 - t0, time.monotonic() - t1, dict(net.timings)


def raw_once(topo) -> float:
    """Raw Mininet: its build only; its shells are then killed (net.stop() deletes every
    interface one by one and takes longer than the build; it is not what is compared)."""
    names = {n: f"r{i}" for i, n in enumerate(topo.nodes)}     # Mininet's 'name-ethN' must fit 15 characters
    t0 = time.monotonic()
    net = Mininet(topo=None, controller=None, build=False, autoSetMacs=False, autoStaticArp=False,
                  waitConnected=False)
    hosts = {n: net.addHost(names[n], cls=Host) for n in topo.nodes}
    for link in topo.links:
        net.addLink(hosts[link.a.node], hosts[link.b.node])
    net.build()
    took = time.monotonic() - t0
    for h in hosts.values():
        h.shell.kill()
    for h in hosts.values():
        h.shell.wait()
    return took


def med(xs: list[float]) -> str:
    return f"{statistics.median(xs):.2f} s ({min(xs):.2f}-{max(xs):.2f})"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--sizes", default="10,100,500", help="which cases: 10 (starter), 100, 500")
    args = ap.parse_args()
    sizes = args.sizes.split(",")
    cases = [c for c in [
        ("10", "starter (`agent-lan.yaml`, 10 nodes, 9 links)", load_topology(ROOT / "topologies/agent-lan.yaml").renamed("bench1")),
        ("100", "100 hosts on 10 LANs (126 nodes, 125 links)", load_topology("<grid>", text=office_grid(100, 10, name="bench2"))),
        ("500", "contact centre, 500 agents (`contact-centre.yaml`, 512 nodes, 511 links)",
         load_topology(ROOT / "topologies/contact-centre.yaml").renamed("bench3")),
    ] if c[0] in sizes]
    print(f"machine: {platform.node()} {platform.machine()}, {os.cpu_count()} cores, kernel {platform.release()}, "
          f"Python {platform.python_version()}; {time.strftime('%Y-%m-%d %H:%M')}; load average "
          f"{os.getloadavg()[0]:.1f}; {args.runs} runs each\n")
    print("| topology | raw Mininet build | lab network | ratio | whole lab (services listening) | ratio | lab teardown |")
    print("|---|---|---|---|---|---|---|")
    for _key, label, topo in cases:
        raw, netw, whole, down, phases = [], [], [], [], []
        for _ in range(args.runs):
            raw.append(raw_once(topo))
            time.sleep(0.5)
            b, _d, _t = lab_once(topo, services=False)
            netw.append(b)
            time.sleep(0.5)
            b, d, t = lab_once(topo, services=True)
            whole.append(b)
            down.append(d)
            phases.append(t)
            time.sleep(0.5)
        r = statistics.median(raw)
        print(f"| {label} | {med(raw)} | {med(netw)} | {statistics.median(netw) / r:.2f}x | {med(whole)} | "
              f"{statistics.median(whole) / r:.2f}x | {med(down)} |", flush=True)
        keys = ("nodes", "links", "config", "ready", "services")
        print("  phases (median s): " + ", ".join(
            f"{k} {statistics.median(p.get(k, 0.0) for p in phases):.2f}" for k in keys), file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()
