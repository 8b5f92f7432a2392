"""The report's Chromium section (lab/report/browser.py, issue 14 item 5): a failed call says
why gathering failed from what Chrome itself reported."""

from lab.report import browser


def _call(timeline, **kw):
    return {"engine": "chromium", "timeline": timeline, **kw}


def test_gathering_failed_without_an_answer():
    tl = [{"t": 0.1, "kind": "stun", "name": "send ALLOCATE"}, {"t": 0.35, "kind": "stun", "name": "send ALLOCATE"},
          {"t": 8.5, "kind": "stats", "name": "getStats", "when": "session failed",
           "transport": [{"id": "T01", "iceState": "new", "dtlsState": "new", "bytesSent": 0, "bytesReceived": 0}],
           "pairs": [], "local": [], "remote": []}]
    obs = {"call:chromium": _call(tl), "call:emulated": {"engine": "emulated", "timeline": []}}
    [c] = browser.calls(obs)
    assert c["key"] == "call:chromium"
    assert c["why"] == ("Chrome gathered no relay candidate: 2 Allocate requests sent, no answer and no "
                        "candidate error; transport ICE new, DTLS new")
    md = browser.section(obs)
    assert "## What Chrome reported" in md and "local candidates none" in md


def test_error_answers_candidate_errors_and_the_pair():
    tl = [{"t": 0.1, "kind": "stun", "name": "send ALLOCATE"},
          {"t": 0.1, "kind": "stun", "name": "ALLOCATE error", "code": 401},
          {"t": 0.2, "kind": "ice", "name": "candidate-error", "url": "turn:203.0.113.2:3478?transport=udp",
           "code": 486, "text": "Allocation Quota Reached"},
          {"t": 3.0, "kind": "stats", "name": "getStats", "when": "hangup",
           "transport": [{"id": "T01", "iceState": "connected", "dtlsState": "connected"}],
           "pairs": [{"id": "P1", "state": "in-progress", "nominated": True, "localCandidateId": "L1",
                      "remoteCandidateId": "R1", "requestsSent": 8, "responsesReceived": 4,
                      "currentRoundTripTime": 0.68}],
           "local": [{"id": "L1", "candidateType": "relay", "protocol": "udp", "relayProtocol": "tcp",
                      "address": "203.0.113.2", "port": 50000}],
           "remote": [{"id": "R1", "candidateType": "relay", "protocol": "udp", "address": "203.0.113.2",
                       "port": 50002}]}]
    [c] = browser.calls({"call:chromium": _call(tl, reached_talking=True, quality={"rtt_ms": None})})
    assert c["why"].startswith("Chrome gathered 1 relay candidate (TCP to TURN): "
                               "turn:203.0.113.2:3478?transport=udp answered 486 Allocation Quota Reached")
    assert "nominated pair in-progress" in c["why"] and "no round trip" in c["why"]
    assert c["pairs"] == [{"local": "relay 203.0.113.2:50000 udp (relay over tcp)",
                           "remote": "relay 203.0.113.2:50002 udp", "state": "in-progress", "nominated": True,
                           "checks": "8 / 4", "rtt": "680 ms"}]
    assert "| relay 203.0.113.2:50000 udp (relay over tcp) |" in browser.section(
        {"call:chromium": _call(tl, reached_talking=True, quality={"rtt_ms": None})})


def test_no_section_without_a_chromium_call():
    assert browser.calls({"call:a": {"engine": "emulated", "timeline": []}}) == []
    assert browser.section({}).strip() == ""
