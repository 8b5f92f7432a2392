"""A scenario's report in both formats (one template set) and its JUnit XML, from results (no lab needed)."""

import re
import xml.etree.ElementTree as ET
from pathlib import Path

from lab.report.scenario import html, junit, markdown
from lab.scenario.expect import Check
from lab.scenario.load import load_scenario
from lab.scenario.runner import Event, Result

ROOT = Path(__file__).resolve().parents[2]

VDI = {"mode": "in-desktop", "thin_client": "thin1", "desktop": "desktop", "engine_on": "desktop",
       "signalling_from": "desktop",
       "mouth_to_ear": {"redirected": {"network_ms": 10.4, "softphone_ms": 80.0, "total_ms": 90.4},
                        "in-desktop": {"network_ms": 15.4, "display_ms": 45.9, "softphone_ms": 80.0, "total_ms": 141.3}}}


def _result() -> Result:
    s = load_scenario(ROOT / "scenarios/udp3478-blocked.yaml")
    obs = {"probe:stun": {"proto": "udp", "to": "203.0.113.10", "port": 3478, "requests_where": "left agent1",
                          "replies_where": "none came back",
                          "requests_path": [{"at": "agent1:eth0", "direction": "out", "count": 5}],
                          "replies_path": [{"at": "agent1:eth0", "count": 0}]},
           "call:agent1": {"diagnosis": "dropped inside fw <rule 6>", "vdi": VDI,
                           "transactions": {"requests_where": "6 left agent1",
                                            "points": [{"at": "fw:eth0", "direction": "in",
                                                        "requests": {"Allocate": 6}, "answers": {}, "transactions": 1}],
                                            "turn_log": [{"t": 0.5, "client": "10.10.0.2", "transport": "udp",
                                                          "method": "Allocate", "outcome": "error", "code": 401,
                                                          "latency_ms": 1}] * 41}}}
    return Result(s, "office", "fail", [Check("call agent1: talks", "fail", "failed with <ice_collection_timeout>", "\"why\"")],
                  obs, [Event(0.0, "runner", "probe stun"), Event(1.25, "probe:stun", "sent 5")],
                  {"build": 0.7, "timeline": 2.0, "total": 3.2}, pcaps={"agent1:eth0": "/x/pcap/agent1-eth0.pcap"})


def test_markdown_and_html_show_the_same_sections():
    r = _result()
    md, page = markdown(r), html(r)
    md_sections = re.findall(r"^## (.+)$", md, re.M)
    assert md_sections == ["Expectations", "Where packets went", "Where the calls' STUN/TURN packets went",
                           "VDI: where the softphone ran, mouth-to-ear (one way)", "Timeline", "Topology"]
    assert [h.replace("&#39;", "'") for h in re.findall(r"<h2>(.+?)</h2>", page)] == md_sections
    assert "TURN transaction log (41 lines from the agent, first 40):" in md
    assert md.count("| 0.500 s | 10.10.0.2 | udp | Allocate | error | 401 | 1 ms |") == 40
    assert "[agent1:eth0](pcap/agent1-eth0.pcap)" in md
    assert md.endswith("Build 0.70 s, timeline 2.00 s, total 3.20 s.\n")


def test_html_is_escaped_and_markdown_is_not():
    r = _result()
    assert "failed with &lt;ice_collection_timeout&gt;" in html(r)
    assert "dropped inside fw &lt;rule 6&gt;" in html(r)
    assert "failed with <ice_collection_timeout>" in markdown(r)


def test_junit_counts_failures_and_errors_and_escapes(tmp_path):
    ok, bad = _result(), _result()
    ok.verdict, ok.checks = "pass", [Check("probe: reached", "pass", "5 of 5", None)]
    bad.verdict, bad.error, bad.turn_backend = "error", 'the lab "office" could not be built <nft>', "coturn"
    text = junit([ok, _result(), bad], tmp_path / "ci" / "junit.xml", backend_in_names=True).read_text()
    assert text.startswith('<?xml version="1.0" encoding="UTF-8"?>\n<testsuite name="icelab" tests="3" '
                           'failures="1" errors="1" time="9.600">')
    suite = ET.fromstring(text.split("\n", 1)[1])
    cases = suite.findall("testcase")
    assert [c.get("name") for c in cases] == ["udp3478-blocked", "udp3478-blocked", "udp3478-blocked[coturn]"]
    assert cases[0].get("classname") == "icelab.udp3478" and cases[0].get("file").endswith("udp3478-blocked.yaml")
    assert list(cases[0]) == []
    assert cases[1].find("failure").get("message") == "expectations not met"
    assert cases[1].find("failure").text == '[fail] call agent1: talks: failed with <ice_collection_timeout> ("why")'
    assert cases[2].find("error").get("message") == 'the lab "office" could not be built <nft>'
