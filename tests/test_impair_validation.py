"""Link impairments in topology files: what is accepted, and the messages for what is not.

Golden messages: each broken ``impair`` below is reported exactly like this by
``icelab validate`` (file:line: path: message, then the hint), and nothing is built.
"""

import subprocess
import sys

import pytest

from lab.model import InputError, load_topology
from lab.model.impairment import GilbertElliott, Impairment, LinkImpairment
from lab.net.shaper.netem import netem_args

HEAD = "name: t\nnodes:\n  l: {kind: host}\n  r: {kind: host}\nlinks:\n  - a: l\n    b: r\n    subnet: 10.77.0.0/30\n"


def _load(impair_lines: str):
    return load_topology("t.yaml", text=HEAD + "    impair:\n" + impair_lines)


def _problems(impair_lines: str) -> str:
    """The problems reported at the impair itself (what a broken link entails elsewhere,
    such as a host left without links, is the foundation's business)."""
    with pytest.raises(InputError) as info:
        _load(impair_lines)
    return "\n".join(str(p) for p in info.value.problems if p.path.startswith("links[0].impair"))


GOLDEN = {
    "negative delay": ("      delay: -20ms\n",
                       "t.yaml:10: links[0].impair.delay: delay cannot be negative (-20ms)\n"
                       "    hint: a link cannot deliver packets before they are sent; use 0ms or more"),
    "loss over 100%": ("      loss: 120%\n",
                       "t.yaml:10: links[0].impair.loss: loss 120% is out of range\n"
                       "    hint: a probability is from 0% to 100%"),
    "unknown time unit": ("      a2b: {delay: 20 msec}\n",
                          "t.yaml:10: links[0].impair.a2b.delay: '20 msec' is not a time\n"
                          "    hint: unknown unit 'msec'; write a time with its unit: 20ms, 0.2s or 500us"),
    "rate in bytes": ("      rate: 1mbps\n",
                      "t.yaml:10: links[0].impair.rate: '1mbps' is not a rate\n"
                      "    hint: unknown unit 'mbps'; write a rate in bit/s with its unit: 100kbit, 1mbit, 1.5gbit (tc's units; not bytes)"),
    "bare number": ("      jitter: 5\n",
                    "t.yaml:10: links[0].impair.jitter: jitter 5 has no unit\n"
                    "    hint: write a time with its unit: 20ms, 0.2s or 500us (a bare number could mean s or ms)"),
    "burst without mean": ("      b2a: {loss: {burst: 4}}\n",
                           "t.yaml:10: links[0].impair.b2a.loss: bursty loss needs both 'mean' and 'burst'\n"
                           "    hint: e.g. loss: {mean: 5%, burst: 4}"),
    "burst under one": ("      loss: {mean: 5%, burst: 0.5}\n",
                        "t.yaml:10: links[0].impair.loss.burst: burst 0.5 must be a number of packets, at least 1\n"
                        "    hint: the mean length of a loss burst in packets, e.g. burst: 4"),
    "misspelt setting": ("      dealy: 20ms\n",
                         "t.yaml:10: links[0].impair.dealy: unknown field 'dealy'\n"
                         "    hint: did you mean 'delay'? allowed fields: a2b, b2a, delay, distribution, duplicate, jitter, loss, queue, rate, reorder"),
    "unknown distribution": ("      distribution: gauss\n",
                             "t.yaml:10: links[0].impair.distribution: 'gauss' is not allowed here\n"
                             "    hint: use one of 'normal', 'uniform', 'pareto' or 'paretonormal'"),
    "reorder without delay": ("      reorder: 10%\n",
                              "t.yaml:10: links[0].impair.reorder: reorder needs a delay: packets overtake the delayed ones\n"
                              "    hint: add a delay, e.g. delay: 10ms, reorder: 25%"),
    "queue zero": ("      rate: 1mbit\n      queue: 0\n",
                   "t.yaml:11: links[0].impair.queue: queue 0 must be a whole number of packets, at least 1\n"
                   "    hint: packets that may wait for the rate limit (default 1000)"),
}


@pytest.mark.parametrize("case", GOLDEN, ids=list(GOLDEN))
def test_golden_message(case):
    lines, expected = GOLDEN[case]
    assert _problems(lines) == expected


def test_every_bad_value_is_reported_at_once():
    text = _problems("      delay: -1ms\n      loss: 101%\n      a2b: {rate: 2 parsecs}\n")
    assert text.count("\n    hint:") == 3


def test_cli_exits_2_and_builds_nothing(tmp_path, repo):
    f = tmp_path / "bad.yaml"
    f.write_text(HEAD + "    impair: {delay: -20ms, loss: 150%}\n")
    r = subprocess.run([sys.executable, "-m", "lab.cli", "validate", str(f)], capture_output=True, text=True, cwd=repo)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "links[0].impair.delay: delay cannot be negative" in r.stderr
    assert "nothing was built" in r.stderr


def test_shared_settings_and_per_direction_overrides():
    topo = _load("      delay: 20ms\n      jitter: 2ms\n      loss: {mean: 5%, burst: 4}\n"
                 "      a2b: {rate: 1mbit, queue: 50}\n      b2a: {delay: 0.1s, loss: 1%}\n")
    imp = topo.links[0].impair
    assert imp.a2b == Impairment(delay=0.02, jitter=0.002, burst=GilbertElliott.from_mean(0.05, 4), rate=1e6, queue=50)
    assert imp.b2a == Impairment(delay=0.1, jitter=0.002, loss=0.01)
    assert imp.a2b.burst.mean_burst == pytest.approx(4) and imp.a2b.burst.mean_loss == pytest.approx(0.05)
    assert topo.to_dict()["links"][0]["impair"]["b2a"]["loss"] == "1%"


def test_gilbert_elliott_parameters_as_netem_writes_them():
    topo = _load("      loss: {p: 1%, r: 25%, bad: 90%, good: 0.1%}\n")
    assert topo.links[0].impair.a2b.burst == GilbertElliott(0.01, 0.25, 0.9, 0.001)


def test_no_impair_means_not_shaped(repo):
    topo = load_topology(repo / "topologies/agent-lan.yaml")
    assert all(l.impair is None for l in topo.links)
    assert "impair" not in topo.to_dict()["links"][0]


def test_netem_translation_keeps_the_semantics():
    """netem's uniform jitter is a half-width; Gilbert-Elliott's bad/good are its 1-h, 1-k."""
    assert netem_args(Impairment(delay=0.1, jitter=0.01)) == \
        ["limit", "1000", "delay", "100000us", "10000us", "distribution", "normal"]
    args = netem_args(Impairment(jitter=0.01, distribution="uniform", burst=GilbertElliott(0.01, 0.25),
                                 rate=1e6, queue=50, duplicate=0.01))
    assert args == ["limit", "50", "delay", "0us", "17321us", "loss", "gemodel", "1%", "25%", "100%", "0%",
                    "duplicate", "1%", "rate", "1000000bit"]
