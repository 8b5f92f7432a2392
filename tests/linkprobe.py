"""Measuring a lab's link with tests/udp_probe.py run inside its nodes: round trips, one-way
packets, and the statistics the impairment tests judge them by. Shared by the shaper's tests
(tests/net/test_shaping.py) and netem's (tests/netem/test_netem.py) so that both backends are
measured the same way."""

import json
import math
import subprocess
import sys
from pathlib import Path

#: the right-hand host of tests/topologies/shaped-pair.yaml and tests/netem/netem-lan.yaml
RIGHT = "10.77.0.2"
PROBE = [sys.executable, str(Path(__file__).resolve().parent / "udp_probe.py")]


def start(net, node, *args):
    """A probe server (echo, sink) in ``node``, once it says it is ready."""
    p = net.node(node).popen(PROBE + [str(a) for a in args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "ready", p.stderr.read()
    return p


def run(net, node, *args, timeout=60):
    """A probe command in ``node``, to its end: its JSON answer."""
    p = net.node(node).popen(PROBE + [str(a) for a in args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out, err = p.communicate(timeout=timeout)
    assert p.returncode == 0, err
    return json.loads(out)


def echo_rtts(net, count=30, rate=50.0, size=64, wait=1.0, timeout=60):
    """[(rtt, there, back)] in seconds for each answered probe from left to right."""
    server = start(net, "right", "echo", 7000)
    try:
        r = run(net, "left", "send", RIGHT, 7000, "--count", count, "--rate", rate, "--size", size,
                "--echo", "--wait", wait, timeout=timeout)
    finally:
        server.kill()
        server.wait()
    return [(back - sent, there - sent, back - there) for _, sent, there, back in r["echo"]]


def one_way(net, count, rate, size=64, idle=1.0, during=None, timeout=120):
    """Packets from left to right: [(seq, sent, received, size)] as the sink saw them."""
    sink = start(net, "right", "sink", 7001, "--idle", idle)
    sender = net.node("left").popen(PROBE + ["send", RIGHT, "7001", "--count", str(count), "--rate", str(rate),
                                             "--size", str(size)], stdout=subprocess.PIPE, text=True)
    if during:
        during()
    sender.communicate(timeout=timeout)
    out, _ = sink.communicate(timeout=timeout)
    return json.loads(out)["recv"]


def binomial_interval(n: int, p: float, level: float = 0.99) -> tuple[int, int]:
    """The central interval holding ``level`` of Binomial(n, p), exact."""
    logs = [math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1) + k * math.log(p) + (n - k) * math.log1p(-p)
            for k in range(n + 1)]
    cdf, lo, hi = 0.0, None, None
    for k, lp in enumerate(logs):
        cdf += math.exp(lp)
        if lo is None and cdf >= (1 - level) / 2:
            lo = k
        if hi is None and cdf >= 1 - (1 - level) / 2:
            hi = k
            break
    return lo, hi


def socket_drops(net, node) -> int:
    """UDP datagrams the node's sockets dropped (a full receive buffer): not the link's loss."""
    lines = [l.split() for l in net.cmd(node, "cat /proc/net/snmp").splitlines() if l.startswith("Udp:")]
    return int(dict(zip(lines[0], lines[1]))["RcvbufErrors"])
