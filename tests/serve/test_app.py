"""icelab serve's web side (lab/serve/app.py) with Starlette's test client, over a fake lab:
every control reaches the lab with what the page sent; every refusal (no token, a wrong one,
another origin, a bad body) answers 403 or 400 and changes nothing."""

from __future__ import annotations

import json
import re
import threading
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from lab.core.errors import UsageError
from lab.net.shaping import parse_settings
from lab.serve.app import STATIC, Hub, create_app
from lab.serve.live import Conflict, NotFound

TOKEN = "s3cret-token-for-tests"


class FakeLab:
    """The methods of lab.serve.live.LiveLab, recording every change."""

    def __init__(self, tmp: Path):
        self.changes: list[tuple] = []
        self.calls: dict[int, dict] = {}
        self.pcap_file = tmp / "fw-eth0.pcap"
        self.pcap_file.write_bytes(b"\xd4\xc3\xb2\xa1" + bytes(20))
        self.topo = type("T", (), {"name": "office-fw"})()

    def topology(self):
        return {"name": "office-fw", "nodes": [], "links": [], "agents": ["agent1"], "turn": ["turn"]}

    def counters(self):
        return {"t": 0.0, "interfaces": {"fw:eth0": {"rx_packets": 1, "tx_packets": 2}}, "rules": {}}

    def node_info(self, name):
        if name != "fw":
            raise NotFound(f"no node '{name}'")
        return {"name": "fw", "rules": []}

    def links(self):
        return []

    def _known(self, node):
        if node not in ("fw", "turn", "nat", "agent1"):
            raise NotFound(f"no node '{node}'")

    def rule_toggle(self, node, number, enabled):
        self._known(node)
        self.changes.append(("rule_toggle", node, number, enabled))
        return "toggled"

    def rule_add(self, node, spec):
        self._known(node)
        self.changes.append(("rule_add", node, spec))
        return "added"

    def rule_delete(self, node, number):
        self._known(node)
        self.changes.append(("rule_delete", node, number))
        return "deleted"

    def link_set(self, a, b, direction, settings, clear=False):
        parse_settings(settings, "serve")       # the real check of the values, as LiveLab's
        self.changes.append(("link_set", a, b, direction, settings, clear))
        return {"a2b": "delay 50ms"}

    def turn(self, node, verb, faults=None):
        self._known(node)
        if verb == "faults" and node == "nat":
            raise Conflict("no control socket")
        self.changes.append(("turn", node, verb, faults))
        return "done"

    def nat_flush(self, node):
        self._known(node)
        self.changes.append(("nat_flush", node))
        return "flushed"

    def place_call(self, agent, engine="emulated", talk=3.0):
        if agent != "agent1":
            raise UsageError(f"'{agent}' is not an agent")
        self.changes.append(("place_call", agent, engine, talk))
        return 1

    def play_step(self, index):
        self.changes.append(("play_step", index))
        return {"said": "played"}

    def timeline(self, verb):
        self.changes.append(("timeline", verb))
        return {"playing": verb == "play", "clock": 0.0}

    def pcap(self, node, interface):
        if (node, interface) != ("fw", "eth0"):
            raise NotFound("no capture")
        return self.pcap_file

    def report(self):
        raise NotFound("no report yet")


@pytest.fixture
def lab(tmp_path):
    return FakeLab(tmp_path)


@pytest.fixture
def client(lab):
    with TestClient(create_app(lab, TOKEN, tick=0.05)) as c:
        yield c


AUTH = {"X-Icelab-Token": TOKEN}
JSON = {"Content-Type": "application/json"}

GETS = ["/", "/static/app.js", "/static/style.css", "/api/topology", "/api/counters", "/api/node/fw",
        "/api/links", "/api/calls", "/api/pcap/fw/eth0"]

#: every control, a good body, and what the lab must have been asked
CONTROLS = [
    ("/api/rule/toggle", {"node": "fw", "number": 6, "enabled": False}, ("rule_toggle", "fw", 6, False)),
    ("/api/rule/add", {"node": "fw", "rule": {"name": "turn udp", "direction": "outbound", "action": "accept",
                                              "proto": "udp", "dst": "connect", "port": 3478}},
     ("rule_add", "fw", {"name": "turn udp", "direction": "outbound", "action": "accept", "proto": "udp",
                         "dst": "connect", "port": 3478, "log": False})),
    ("/api/rule/delete", {"node": "fw", "number": 8}, ("rule_delete", "fw", 8)),
    ("/api/link", {"a": "fw", "b": "isp", "direction": "a2b", "delay": "50ms", "jitter": "5ms", "loss": "2%",
                   "rate": "1mbit"},
     ("link_set", "fw", "isp", "a2b", {"delay": "50ms", "jitter": "5ms", "loss": "2%", "rate": "1mbit"}, False)),
    ("/api/link", {"a": "fw", "b": "isp", "clear": True}, ("link_set", "fw", "isp", "both", {}, True)),
    ("/api/turn", {"node": "turn", "verb": "stop"}, ("turn", "turn", "stop", None)),
    ("/api/turn", {"node": "turn", "verb": "start"}, ("turn", "turn", "start", None)),
    ("/api/turn", {"node": "turn", "verb": "restart"}, ("turn", "turn", "restart", None)),
    ("/api/turn", {"node": "turn", "verb": "faults", "faults": {"drop": [{"method": "Allocate"}]}},
     ("turn", "turn", "faults", {"drop": [{"method": "Allocate", "transport": "*", "probability": 1.0}],
                                 "delay": [], "error": [], "stop_relay": False, "permission_lifetime": None})),
    ("/api/nat/flush", {"node": "nat"}, ("nat_flush", "nat")),
    ("/api/call", {"agent": "agent1"}, ("place_call", "agent1", "emulated", 3.0)),
    ("/api/call", {"agent": "agent1", "engine": "chromium", "talk": 5}, ("place_call", "agent1", "chromium", 5.0)),
    ("/api/scenario/play", {"step": 0}, ("play_step", 0)),
    ("/api/scenario/timeline", {"verb": "play"}, ("timeline", "play")),
    ("/api/scenario/timeline", {"verb": "pause"}, ("timeline", "pause")),
]

#: bodies every check must refuse with 400
BAD = [
    ("/api/rule/toggle", {"node": "fw", "number": 6}),                           # enabled missing
    ("/api/rule/toggle", {"node": "fw", "number": "six", "enabled": True}),
    ("/api/rule/toggle", {"node": "fw", "number": 0, "enabled": True}),
    ("/api/rule/toggle", {"node": "fw", "number": 6, "enabled": True, "cmd": "rm -rf /"}),   # unknown field
    ("/api/rule/add", {"node": "fw", "rule": {"direction": "outbound", "action": "allow"}}),
    ("/api/rule/add", {"node": "fw", "rule": {"direction": "out", "action": "accept"}}),
    ("/api/rule/add", {"node": "fw", "rule": {"direction": "outbound", "action": "accept", "nft": "flush ruleset"}}),
    ("/api/rule/delete", {"node": "fw"}),
    ("/api/link", {"a": "fw", "b": "isp", "direction": "sideways"}),
    ("/api/link", {"a": "fw", "b": "isp", "delay": "fast"}),                      # lab.net.shaping's check
    ("/api/link", {"a": "fw", "b": "isp", "loss": "250%"}),
    ("/api/link", {"a": "fw", "b": "isp", "netem": "delay 1s"}),
    ("/api/turn", {"node": "turn", "verb": "exec"}),
    ("/api/turn", {"node": "turn", "verb": "faults", "faults": {"drop": "all"}}),
    ("/api/turn", {"node": "turn", "verb": "faults", "faults": {"error": [{"code": 99}]}}),
    ("/api/nat/flush", {}),
    ("/api/call", {"agent": "agent1", "engine": "firefox"}),
    ("/api/call", {"agent": "agent1", "talk": 3600}),
    ("/api/call", {"agent": "agent9"}),                                           # the lab's own refusal
    ("/api/scenario/play", {"step": -1}),
    ("/api/scenario/timeline", {"verb": "rewind"}),
    ("/api/scenario/timeline", {}),
    ("/api/scenario/timeline", {"verb": "play", "at": 5}),
    ("/api/call", "not an object"),
    ("/api/call", ["agent1"]),
]


@pytest.mark.parametrize("path", GETS)
def test_every_read_needs_the_token(client, path):
    assert client.get(path).status_code == 403
    assert client.get(path, params={"token": "wrong"}).status_code == 403
    assert client.get(path, headers={"X-Icelab-Token": TOKEN[:-1]}).status_code == 403
    assert client.get(path, params={"token": TOKEN}).status_code == 200
    assert client.get(path, headers=AUTH).status_code == 200


def test_the_event_stream_needs_the_token(client):
    assert client.get("/api/events").status_code == 403
    assert client.get("/api/events", params={"token": "nope"}).status_code == 403


@pytest.mark.parametrize("path, body, asked", CONTROLS, ids=[c[0] + ":" + str(i) for i, c in enumerate(CONTROLS)])
def test_every_control_reaches_the_lab(client, lab, path, body, asked):
    r = client.post(path, json=body, headers=AUTH)
    assert r.status_code == 200, r.text
    assert lab.changes == [asked]


@pytest.mark.parametrize("path, body, asked", CONTROLS, ids=[c[0] + ":" + str(i) for i, c in enumerate(CONTROLS)])
def test_every_control_refused_without_the_right_token(client, lab, path, body, asked):
    assert client.post(path, json=body).status_code == 403
    assert client.post(path, json=body, params={"token": "guess"}).status_code == 403
    assert client.post(path, json=body, headers={"X-Icelab-Token": ""}).status_code == 403
    assert lab.changes == []


@pytest.mark.parametrize("headers", [
    {"Origin": "http://evil.example"},
    {"Origin": "http://testserver.evil.example"},
    {"Origin": "null"},
    {"Sec-Fetch-Site": "cross-site"},
    {"Sec-Fetch-Site": "same-site"},
    {"Origin": "http://testserver", "Sec-Fetch-Site": "cross-site"},
])
@pytest.mark.parametrize("path, body, asked", CONTROLS[:1] + CONTROLS[9:11])
def test_cross_origin_changes_are_refused(client, lab, headers, path, body, asked):
    r = client.post(path, json=body, headers=dict(AUTH, **headers))
    assert r.status_code == 403
    assert "refused" in r.json()["error"]
    assert lab.changes == []


def test_same_origin_post_is_taken(client, lab):
    r = client.post("/api/nat/flush", json={"node": "nat"},
                    headers=dict(AUTH, Origin="http://testserver", **{"Sec-Fetch-Site": "same-origin"}))
    assert r.status_code == 200
    assert lab.changes == [("nat_flush", "nat")]


def test_a_form_post_is_refused(client, lab):
    """A cross-site HTML form can send a token it learnt nowhere, but not JSON; refuse non-JSON."""
    r = client.post("/api/nat/flush", content=b"node=nat", headers=dict(AUTH, **{"Content-Type": "application/x-www-form-urlencoded"}))
    assert r.status_code == 403
    r = client.post("/api/nat/flush", content=b'{"node": "nat"}', headers=dict(AUTH, **{"Content-Type": "text/plain"}))
    assert r.status_code == 403
    assert lab.changes == []


@pytest.mark.parametrize("method", ["PUT", "DELETE", "PATCH"])
def test_only_post_changes(client, lab, method):
    r = client.request(method, "/api/nat/flush", json={"node": "nat"}, headers=AUTH)
    assert r.status_code in (403, 405)
    assert lab.changes == []


def test_reads_do_not_change(client, lab):
    for path in GETS:
        client.get(path, headers=AUTH)
    assert client.get("/api/nat/flush", headers=AUTH).status_code == 405
    assert lab.changes == []


@pytest.mark.parametrize("path, body", BAD, ids=[f"{p}:{i}" for i, (p, _) in enumerate(BAD)])
def test_a_bad_body_is_refused_and_nothing_changes(client, lab, path, body):
    r = client.post(path, json=body, headers=AUTH)
    assert r.status_code == 400, r.text
    assert r.json()["error"]
    assert lab.changes == []


def test_a_body_that_is_not_json(client, lab):
    r = client.post("/api/call", content=b"{agent: agent1", headers=dict(AUTH, **JSON))
    assert r.status_code == 400
    assert lab.changes == []


def test_what_the_lab_cannot_find_or_do(client, lab):
    r = client.post("/api/rule/toggle", json={"node": "fw9", "number": 6, "enabled": False}, headers=AUTH)
    assert r.status_code == 404 and "fw9" in r.json()["error"]
    r = client.post("/api/turn", json={"node": "nat", "verb": "faults", "faults": {}}, headers=AUTH)
    assert r.status_code == 409
    assert client.get("/api/node/x", headers=AUTH).status_code == 404
    assert client.get("/api/pcap/fw/eth9", headers=AUTH).status_code == 404
    assert client.get("/api/report", headers=AUTH).status_code == 404
    assert client.get("/static/../app.py", headers=AUTH).status_code == 404
    assert client.get("/static/index.html.bak", headers=AUTH).status_code == 404
    assert lab.changes == []


def test_pcap_download(client, lab):
    r = client.get("/api/pcap/fw/eth0", params={"token": TOKEN})
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/vnd.tcpdump.pcap"
    assert "office-fw-fw-eth0.pcap" in r.headers["content-disposition"]
    assert r.content == lab.pcap_file.read_bytes()


def test_the_page_keeps_to_itself(client):
    """No CDN, no inline script: the page loads only what the package ships; it may not be framed,
    and the token in its address is not sent on as a Referer."""
    r = client.get("/", headers=AUTH)
    assert "default-src 'self'" in r.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in r.headers["content-security-policy"]
    assert r.headers["referrer-policy"] == "no-referrer"
    for f in ("index.html", "app.js", "style.css"):
        text = (STATIC / f).read_text()
        urls = re.findall(r"(?:https?:)?//[\w-]+(?:\.[\w-]+)+", text)
        assert set(urls) <= {"http://www.w3.org"}, (f, urls)      # the SVG namespace is a name, not a load
    assert "<script>" not in (STATIC / "index.html").read_text()


def test_events_reach_every_watcher(lab):
    """Counters on the ticker, a published event to every open stream (two pages see the same)."""
    hub = Hub()
    with TestClient(create_app(lab, TOKEN, hub, tick=0.05)) as c:
        got: dict[int, list] = {0: [], 1: []}

        def watch(i):
            with c.stream("GET", "/api/events", params={"token": TOKEN}) as r:
                assert r.status_code == 200
                assert r.headers["content-type"].startswith("text/event-stream")
                kinds = []
                for line in r.iter_lines():
                    if line.startswith("event: "):
                        kinds.append(line[7:])
                    if line.startswith("data: ") and '"hello-test"' in line:
                        got[i] = kinds
                        return
                    if kinds.count("counters") == 2 and "hello" in kinds:
                        hub.publish({"type": "log", "text": "hello-test"})
        threads = [threading.Thread(target=watch, args=(i,)) for i in (0, 1)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(10)
        for i in (0, 1):
            assert got[i][:1] == ["hello"] and "counters" in got[i] and got[i][-1] == "log", got


def test_a_control_result_is_json(client, lab):
    r = client.post("/api/link", json={"a": "fw", "b": "isp", "delay": "50ms"}, headers=AUTH)
    assert r.json() == {"a2b": "delay 50ms"}
    r = client.post("/api/nat/flush", json={"node": "nat"}, headers=AUTH)
    assert r.json() == {"said": "flushed"}
    assert json.loads(client.get("/api/calls", headers=AUTH).text) == []
