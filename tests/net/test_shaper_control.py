"""The shaper's control messages (lab/net/shaper/messages.py over lab/core/control.py): a
bad request is answered with what is wrong and attaches or changes nothing; good ones do
what they did. No lab is built: the shaper reads a state file, and ``set`` is recorded."""

from __future__ import annotations

import json
import os
import socket

import pytest

from lab.model import load_topology
from lab.model.impairment import GilbertElliott, Impairment
from lab.net.shaper import daemon
from lab.net.state import LabState, NodeState


@pytest.fixture
def shaper(repo, tmp_path, monkeypatch):
    monkeypatch.setenv("ICELAB_RUN_DIR", str(tmp_path))
    topo = load_topology(repo / "tests/topologies/shaped-pair.yaml")
    me = os.getpid()
    LabState(topo.name, topo.file, me, 0, status="running", topology=topo.to_dict(),
             nodes={n: NodeState(me, 0, 0) for n in topo.nodes}).save()
    s = daemon.Shaper(topo.name)
    s.applied = []
    monkeypatch.setattr(s, "set", lambda link, direction, imp: s.applied.append((link, direction, imp)))
    yield s
    s.control.close()


BAD = [
    ({"op": "set", "link": "0"}, "link: Input should be a valid integer"),
    ({"op": "set", "link": 0, "a2b": {"delay": "10ms"}}, "a2b.delay: Input should be a valid number"),
    ({"op": "set", "link": 0, "a2b": {"loss": 5}}, "a2b.loss: Input should be less than or equal to 1"),
    ({"op": "set", "link": 0, "a2b": {"delay": -0.1}}, "a2b.delay: Input should be greater than or equal to 0"),
    ({"op": "set", "link": 0, "b2a": {"jitter": 0.01, "distribution": "cauchy"}}, "b2a.distribution: Input should be"),
    ({"op": "set", "link": 0, "a2b": {"dealy": 0.1}}, "a2b.dealy: Extra inputs are not permitted"),
    ({"op": "set", "link": 0, "a2b": {"burst": {"p": 0.1}}}, "a2b.burst.r: Field required"),
    ({"op": "set", "link": 0, "c2d": {}}, "c2d: Extra inputs are not permitted"),
    ({"op": "set", "link": 7, "a2b": {"delay": 0.1}}, "no link 7"),
    ({"op": "set"}, "link: Field required"),
    ({"op": "show", "all": True}, "all: Extra inputs are not permitted"),
    ({"op": "sett"}, "unknown op 'sett'"),
    ({"link": 0}, "a request needs 'op'"),
    ([], "a request is a JSON object, not a list"),
]


@pytest.mark.parametrize("request_, says", BAD, ids=[str(i) for i in range(len(BAD))])
def test_a_bad_request_is_refused_and_changes_nothing(shaper, request_, says):
    answer = shaper.channel.answer(json.dumps(request_))
    assert answer["ok"] is False and says in answer["error"], answer
    assert shaper.applied == [] and shaper.dirs == {}


def test_good_requests_work_as_before(shaper):
    imp = Impairment(delay=0.01, jitter=0.002, distribution="pareto", burst=GilbertElliott(0.02, 0.4), rate=1e6,
                     queue=50)
    answer = shaper.channel.answer(json.dumps({"op": "set", "link": 0, "a2b": imp.to_wire(), "b2a": None}))
    assert answer["ok"] and "at" in answer
    assert shaper.applied == [(0, "a2b", imp)]
    shaper.channel.answer(json.dumps({"op": "set", "link": 0, "b2a": {"delay": 1}}))      # an int is a number
    assert shaper.applied[-1] == (0, "b2a", Impairment(delay=1.0))
    assert shaper.channel.answer('{"op": "show"}') == {"ok": True, "links": {}}
    ping = shaper.channel.answer('{"op": "ping"}')
    assert ping["ok"] and ping["pid"] == os.getpid() and "read_lag_us" in ping["calibration"]
    assert shaper.channel.answer('{"op": "trace"}')["error"].startswith("start the shaper with ICELAB_SHAPER_TRACE=1")


def test_the_socket_answers_a_bad_line_and_keeps_serving(shaper):
    def one(line: bytes) -> dict:
        with socket.socket(socket.AF_UNIX) as c:
            c.connect(str(daemon.socket_path(shaper.lab)))
            c.sendall(line)
            shaper.serve()                   # the loop found the control socket readable
            return json.loads(c.makefile("rb").readline())
    assert "not JSON" in one(b"{oops\n")["error"]
    assert "at most" in one(b'{"op": "ping", "x": "' + b"z" * 70000 + b'"}\n')["error"]
    assert one(b'{"op": "ping"}\n')["ok"]
