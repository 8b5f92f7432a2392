"""Link impairments measured on real links (the lab's shaper on this kernel, without netem).

Every number comes from the UDP probe (tests/udp_probe.py) run inside the lab's
nodes; lab namespaces share the host's clock, so one-way delays are exact.
"""

import json
import math
import statistics
import subprocess
import sys
import time

import pytest

from lab.core.control import ask
from lab.model import load_topology
from lab.model.impairment import GilbertElliott, Impairment
from lab.net import Network
from lab.net import shaping
from lab.net.shaper.daemon import socket_path
from linkprobe import binomial_interval as _binomial_interval, echo_rtts as _echo_rtts, one_way as _one_way
from linkprobe import socket_drops as _socket_drops

pytestmark = pytest.mark.root



@pytest.fixture
def lab(repo):
    with Network(load_topology(repo / "tests/topologies/shaped-pair.yaml")) as net:
        yield net


@pytest.fixture
def plain(repo):
    """The same pair without the file's impairment: nothing shaped until a test says so."""
    topo = load_topology(repo / "tests/topologies/shaped-pair.yaml")
    topo.links[0].impair = None
    with Network(topo) as net:
        yield net


def test_the_lab_keeps_its_backend_and_its_shaper_refuses_bad_requests(lab):
    from lab.net.state import get
    assert get(lab.topo.name).impairment_backend == "shaper"        # no netem on this kernel
    path = socket_path(lab.topo.name)
    before = shaping.show(lab)[0]
    for bad in ({"op": "set", "link": 0, "a2b": {"delay": "1s"}}, {"op": "set", "link": 0, "a2b": {"loss": 5}},
                {"op": "set", "link": "0"}, [], {"op": "stop"}):
        answer = ask(path, bad)
        assert answer["ok"] is False and answer["error"], answer
    after = shaping.show(lab)[0]
    assert (after.a2b, after.b2a) == (before.a2b, before.b2a) == (Impairment(delay=0.010), Impairment())
    live = ask(path, {"op": "show"})["links"]["0"]
    assert live["a2b"]["settings"] == Impairment(delay=0.010).to_wire()
    assert ask(path, {"op": "ping"})["ok"]


def test_delay_is_one_way_per_direction_and_rtt_is_twice_it(lab):
    # the file delays left->right by 10 ms and leaves right->left alone
    r = _echo_rtts(lab, count=20)
    there = statistics.median(x[1] for x in r)
    back = statistics.median(x[2] for x in r)
    assert 0.0095 <= there <= 0.011 and back < 0.001, (there, back)
    assert shaping.show(lab)[0].a2b == Impairment(delay=0.010)

    # the shaper measured how late it hears of a packet, and compensates it (calibrate.py)
    cal = ask(socket_path(lab.topo.name), {"op": "ping"})["calibration"]
    assert cal["error"] == "" and cal["samples"] >= 10 and 0 < cal["read_lag_us"] < 2000, cal

    shaping.set_impairment(lab, "left", "right", Impairment(), "a2b")
    base = statistics.median(x[0] for x in _echo_rtts(lab, count=50, rate=100))
    stalls = []
    for d in (0.0, 0.020, 0.100, 0.300):
        shaping.set_impairment(lab, "left", "right", Impairment(delay=d))
        rtts = [x[0] for x in _echo_rtts(lab, count=50, wait=2 * d + 0.5)]
        assert len(rtts) == 50, "no probe may be lost"
        # the median is the measured RTT, within the 1 ms
        median = statistics.median(rtts)
        print(f"delay {d * 1000:g} ms: median RTT error {(median - 2 * d - base) * 1000:+.3f} ms")
        assert abs(median - (2 * d + base)) <= 0.001, \
            f"delay {d * 1000:g} ms: median RTT {median * 1000:.3f} ms ({min(rtts) * 1000:.3f} .. " \
            f"{max(rtts) * 1000:.3f}), base {base * 1000:.3f} ms"
        # no probe comes back before 2 d; a probe over 10 ms late is a VM stall (the VM did
        # not run the probe or the shaper for that long, shaped or not: one stall of the VM
        # can hold two probes 20 ms apart): counted apart, at most 1 % of all, as the
        # jitter test does
        assert min(rtts) >= 2 * d, f"delay {d * 1000:g} ms: a probe came back after {min(rtts) * 1000:.3f} ms"
        stalls += [(d, r) for r in rtts if r >= 2 * d + base + 0.010]
    assert len(stalls) <= 4 * 50 // 100, f"{len(stalls)} probes stalled (delay, RTT): {stalls}"


def test_zero_impairment_adds_at_most_0_2_ms_median(plain):
    assert shaping.show(plain)[0].a2b is None
    base = statistics.median(x[0] for x in _echo_rtts(plain, count=200, rate=200))
    shaping.set_impairment(plain, "left", "right", Impairment())
    # a direction with nothing to do leaves the queue (see docs/impairments.md)
    assert all("not queued" in w for w in shaping.show(plain)[0].where.values())
    shaped = statistics.median(x[0] for x in _echo_rtts(plain, count=200, rate=200))
    assert shaped - base <= 0.0002, f"median RTT {shaped * 1000:.3f} ms shaped vs {base * 1000:.3f} ms"


def test_random_loss_stays_in_the_binomial_interval(lab):
    shaping.set_impairment(lab, "left", "right", Impairment(loss=0.05), "a2b")
    got = _one_way(lab, 10_000, 5000)
    seqs = [g[0] for g in got]
    assert seqs == sorted(seqs), "loss must not reorder"
    lost = 10_000 - len(got)
    lo, hi = _binomial_interval(10_000, 0.05)
    assert lo <= lost <= hi, f"{lost} lost of 10000, 99% interval {lo}..{hi}"


def test_gilbert_elliott_bursts_have_the_configured_mean_length(lab):
    ge = GilbertElliott.from_mean(0.05, 4.0)
    shaping.set_impairment(lab, "left", "right", Impairment(burst=ge), "a2b")
    n = 20_000
    got = _one_way(lab, n, 8000)
    arrived = sorted({g[0] for g in got})
    bursts, prev = [], -1
    for s in arrived + [n]:
        if s - prev > 1:
            bursts.append(s - prev - 1)
        prev = s
    mean = statistics.fmean(bursts)
    # burst lengths are geometric with mean 1/r: their mean's standard error is known
    se = math.sqrt((1 - ge.r) / ge.r ** 2 / len(bursts))
    assert abs(mean - 4.0) <= 3 * se, f"mean burst {mean:.2f} over {len(bursts)} bursts (+/- {3 * se:.2f})"
    loss = 1 - len(arrived) / n
    assert 0.035 <= loss <= 0.065, loss


def test_jitter_has_the_configured_deviation_and_does_not_reorder(lab):
    shaping.set_impairment(lab, "left", "right", Impairment(delay=0.030, jitter=0.002), "a2b")
    got = _one_way(lab, 600, 150)
    assert len(got) == 600
    seqs = [g[0] for g in got]
    assert seqs == sorted(seqs), "jitter must not reorder unless asked"
    delays = [g[2] - g[1] for g in got]
    # a VM stall (over 5 deviations: tens of ms, one packet in hundreds) is not jitter the shaper made: count
    # such packets apart, allow at most 1 %, and measure the deviation without them
    stalls = [x for x in delays if x > 0.030 + 5 * 0.002]
    assert len(stalls) <= len(delays) // 100, f"{len(stalls)} packets stalled: {stalls[:5]}"
    delays = [x for x in delays if x <= 0.030 + 5 * 0.002]
    sd = statistics.stdev(delays)
    assert abs(sd - 0.002) <= 0.0002, f"delay deviation {sd * 1000:.3f} ms for 2 ms (max {max(delays) * 1000:.3f} ms)"
    assert abs(statistics.fmean(delays) - 0.030) <= 0.001
    # asked for: a quarter of the packets skip the delay and overtake
    shaping.set_impairment(lab, "left", "right", Impairment(delay=0.020, reorder=0.25), "a2b")
    got = _one_way(lab, 400, 200)
    seqs = [g[0] for g in got]
    out_of_order = sum(1 for x, y in zip(seqs, seqs[1:]) if y < x)
    assert len(got) == 400 and out_of_order > 20


def test_rate_limit_gives_the_configured_goodput(lab):
    shaping.set_impairment(lab, "left", "right", Impairment(rate=1e6, queue=50), "a2b")
    size = 1200                                   # UDP payload; 1242 bytes on the wire
    got = _one_way(lab, 400, 150, size=size)      # 1.5 Mbit/s offered for 2.7 s
    steady = got[10:]                             # once the queue is full
    duration = steady[-1][2] - steady[0][2]
    wire = (len(steady) - 1) * (size + 28 + 14) * 8 / duration
    goodput = (len(steady) - 1) * size * 8 / duration
    assert abs(wire - 1e6) <= 0.05e6, f"{wire / 1e6:.3f} Mbit/s on the wire"
    assert abs(goodput - 1e6 * size / (size + 42)) <= 0.05e6, f"{goodput / 1e6:.3f} Mbit/s goodput"
    c = next(s for s in shaping.show(lab) if s.index == 0).counters["a2b"]
    assert c["overflow"] > 0 and c["held"] == 0


def test_live_change_takes_effect_within_50_ms_and_loses_nothing(lab):
    shaping.set_impairment(lab, "left", "right", Impairment(delay=0.020), "a2b")
    marks = {}

    def change():
        time.sleep(1.0)
        marks["up0"] = time.monotonic()
        shaping.change_impairment(lab, "left", "right", {"delay": "100ms"}, "a2b")
        marks["up1"] = time.monotonic()
        time.sleep(0.5)
        marks["down0"] = time.monotonic()
        shaping.change_impairment(lab, "left", "right", {"delay": "20ms"}, "a2b")
        marks["down1"] = time.monotonic()

    got = _one_way(lab, 400, 200, during=change)
    assert [g[0] for g in got] == list(range(400)), "a change must lose and reorder nothing"
    assert marks["up1"] - marks["up0"] < 0.05 and marks["down1"] - marks["down0"] < 0.05
    # a loaded VM may wake any process late now and then: single packets only show which
    # setting they met (never earlier than it, far from the other), phases are 1 ms at the median
    phases = {"before": [], "up": [], "down": []}
    for seq, sent, recv, _ in got:
        d = recv - sent
        if sent < marks["up0"] - 0.025:                        # left before the change
            phases["before"].append(d)
            assert 0.020 - 0.0005 < d < 0.060, (seq, d)
        elif marks["up1"] <= sent < marks["down0"] - 0.1:      # later ones were still held at the next change
            phases["up"].append(d)
            assert 0.100 - 0.0005 < d < 0.140, (seq, d)
        elif sent >= marks["down1"]:
            phases["down"].append(d)
            assert 0.020 - 0.0005 < d < 0.060, (seq, d)
    for name, want in (("before", 0.020), ("up", 0.100), ("down", 0.020)):
        assert abs(statistics.median(phases[name]) - want) < 0.001, (name, statistics.median(phases[name]))


def test_cli_link_set_and_show(lab, repo):
    env_cmd = [sys.executable, "-m", "lab.cli"]
    r = subprocess.run(env_cmd + ["link", "set", "shaped", "right", "left", "--delay", "30ms", "--loss", "1%",
                                  "--direction", "a2b"], capture_output=True, text=True, cwd=repo)
    assert r.returncode == 0, r.stderr
    r = subprocess.run(env_cmd + ["link", "show", "shaped", "--json"], capture_output=True, text=True, cwd=repo)
    assert r.returncode == 0, r.stderr
    link = json.loads(r.stdout)[0]
    assert link["b2a"] == {"delay": "30ms", "loss": "1%"}       # right -> left is the file's b2a
    assert link["a2b"] == {"delay": "10ms"}
    r = subprocess.run(env_cmd + ["link", "set", "shaped", "left", "right", "--delay=-5ms", "--loss", "150%"],
                       capture_output=True, text=True, cwd=repo)
    assert r.returncode == 2
    assert "--delay: delay cannot be negative (-5ms)" in r.stderr and "--loss: loss 150% is out of range" in r.stderr
    r = subprocess.run(env_cmd + ["link", "show", "shaped"], capture_output=True, text=True, cwd=repo)
    assert "left" in r.stdout and "30ms" in r.stdout


def test_duplication_sends_copies(lab):
    shaping.set_impairment(lab, "left", "right", Impairment(delay=0.005, duplicate=0.10), "a2b")
    dropped = _socket_drops(lab, "right")
    got = _one_way(lab, 2000, 2000)
    dropped = _socket_drops(lab, "right") - dropped     # a full receive buffer's, not the link's
    seqs = [g[0] for g in got]
    copies = len(seqs) - len(set(seqs))
    lo, hi = _binomial_interval(2000, 0.10)
    # every original arrived, so what the sink's socket dropped were copies
    assert set(seqs) == set(range(2000)) and lo <= copies + dropped and copies <= hi, (copies, dropped)
    first = list(dict.fromkeys(seqs))
    assert first == sorted(first), "originals keep their order; each copy comes after its original"


def test_a_link_to_a_lan_is_shaped_both_ways(repo):
    """A lan is a bridge: towards it the host's egress is shaped, from it the bridge port."""
    topo = load_topology(repo / "topologies/agent-lan.yaml")
    with Network(topo) as net:
        shaping.set_impairment(net, "agent1", "office-lan", Impairment(delay=0.030), "a2b")
        shaping.set_impairment(net, "office-lan", "agent1", Impairment(delay=0.010), "a2b")
        where = shaping.show(net)[0].where
        assert where == {"a2b": "agent1 egress eth0", "b2a": "office-lan bridge agent1"}
        # ping takes the kernel's receive time stamp: it shows when the link delivered
        out = net.cmd("agent1", "ping -c 10 -i 0.05 -q 10.10.0.3 | tail -1")    # agent2, across the lan
        low, avg = (float(x) for x in out.split("=")[1].split("/")[:2])
        assert 40.0 <= low and avg < 43.0, out            # both directions, each one way
        shaping.set_impairment(net, "office-lan", "agent1", Impairment(delay=0.010, duplicate=0.5), "a2b")
        out = net.cmd("agent1", "ping -c 10 -i 0.05 10.10.0.3")
        assert "DUP!" in out, out
