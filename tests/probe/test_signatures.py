"""The signatures (lab/probe/signatures.py) on measurements written by hand: each problem
named once, the explained ones not repeated, the targets' inputs read or refused."""

import json

import pytest

from lab.core.errors import UsageError
from lab.probe import signatures
from lab.probe.targets import from_media_info, load_ranges, parse_turn_url, turn_option


def sweep(answered: list[int], silent: list[int], rtt=20.0, loss=0.0):
    return {"sent": 4 * (len(answered) + len(silent)), "replies": 4 * len(answered), "ports_answered": answered,
            "ports_silent": silent, "rtt_ms": rtt if answered else None, "loss": loss if answered else None}


def measured(udp=None, sig_tcp=True, turn443=True, os_name="linux", turn=None, names=None):
    m = {"os": os_name, "names": names or [], "turn": turn or [],
         "turn_tcp443": [{"address": "203.0.113.10:443", **({"ms": 1.0} if turn443 else {"error": "timed out"})}]}
    if udp is not None:
        m["stun"] = udp
    m["signalling"] = {"tcp_ms": 1.0, "tls_ms": 2.0, "ws_status": 101} if sig_tcp else {"tcp_error": "timed out"}
    return m


LINUX = [32768, 39825, 46883, 49151, 49152, 53941, 60999]


@pytest.mark.parametrize("m, expected", [
    (measured(sweep(LINUX, [])), []),
    (measured(sweep([], LINUX)), ["udp3478-blocked"]),
    (measured(sweep([], LINUX), turn443=False), ["allowlist-stale"]),
    (measured(sweep([], LINUX), sig_tcp=False, turn443=False), ["nothing-returns"]),
    (measured(sweep(LINUX, []), sig_tcp=False, turn443=False), ["tcp443-blocked"]),
    (measured(sweep([49152, 53941, 60999], [32768, 39825, 46883, 49151]), sig_tcp=False, turn443=False),
     ["port-range-wrong"]),
    (measured(sweep(LINUX, [], rtt=250.0, loss=0.1)), ["rtt-high", "loss"]),
    (measured(sweep(LINUX, [], rtt=120.0, loss=0.0357)), []),          # one lost of 28 is noise
])
def test_one_finding_per_problem(m, expected):
    found = signatures.findings(m)
    assert [f.id for f in found if f.severity == "problem"] == expected
    assert signatures.verdict(found) == ("healthy" if not expected else "problem")
    for f in found:
        if f.severity == "problem" and f.scenarios:
            assert f"scenarios/{f.scenarios[0]}.yaml" in f.sentence


def test_windows_agent_with_a_linux_return_rule():
    win = [49152, 53247, 57343, 61000, 61001, 61439, 65535]
    found = signatures.findings(measured(sweep(win[:4], win[4:]), os_name="windows"))
    assert [f.id for f in found] == ["port-range-wrong"] and "up to 61000" in found[0].sentence


def test_turn_answers():
    ok = {"address": "a:3478", "url": "turn:a", "unauth_ms": 5.0, "unauth_code": 401, "realm": "r", "nonce": True,
          "relay_ms": 30.0}
    assert [f.id for f in signatures.findings(measured(turn=[ok]))] == ["relay-time"]
    no401 = dict(ok, unauth_code=403, relay_ms=None)
    assert "turn-no-401" in [f.id for f in signatures.findings(measured(turn=[no401]))]
    slow = dict(ok, relay_ms=8500.0)
    assert "relay-slow" in [f.id for f in signatures.findings(measured(turn=[slow]))]
    bad = dict(ok, relay_ms=None, auth_code=401)
    assert "turn-auth-failed" in [f.id for f in signatures.findings(measured(turn=[bad]))]


def test_ranges_and_names(tmp_path):
    p = tmp_path / "ip-ranges.json"
    p.write_text(json.dumps({"prefixes": [
        {"ip_prefix": "203.0.113.0/28", "region": "us-east-1", "service": "AMAZON_CONNECT"},
        {"ip_prefix": "192.0.2.0/24", "region": "eu-west-2", "service": "AMAZON_CONNECT"}]}))
    r = load_ranges(str(p), "us-east-1")
    assert r.contains("203.0.113.10") and not r.contains("203.0.113.40")
    with pytest.raises(UsageError, match="it has eu-west-2, us-east-1"):
        load_ranges(str(p), "ap-south-1")
    names = [{"name": "turn.example", "addresses": ["203.0.113.40"], "in_connect_ranges": {"203.0.113.40": False}},
             {"name": "gone.example", "addresses": [], "error": "Name or service not known"}]
    ids = [f.id for f in signatures.findings(measured(sweep([], LINUX), turn443=False, names=names))]
    assert ids == ["dns-failed", "outside-connect-ranges"]      # it explains allowlist-stale


def test_turn_urls():
    assert parse_turn_url("turn:203.0.113.10:3478?transport=udp").transport == "udp"
    t = parse_turn_url("turns:turn.example:443?transport=tcp")
    assert (t.host, t.port, t.transport) == ("turn.example", 443, "tls")
    assert turn_option("[2001:db8::1]:3478").host == "2001:db8::1"
    assert turn_option("turn.example").port == 3478
    for bad in ("stun:x", "turn:", "turn:h:port"):
        with pytest.raises(UsageError):
            parse_turn_url(bad) if bad.startswith(("turn", "stun")) else turn_option(bad)


def test_media_info_forms(tmp_path):
    cfg = {"iceServers": [{"urls": ["turn:t:3478?transport=udp", "stun:t:3478"], "username": "u", "credential": "c"}],
           "signalingEndpoint": "wss://s/LilyRTC"}
    for doc in ({"callConfigJson": json.dumps(cfg)}, {"callId": "x", "mediaInfo": {"callConfigJson": json.dumps(cfg)}}):
        p = tmp_path / "mi.json"
        p.write_text(json.dumps(doc))
        t = from_media_info(str(p))
        assert [x.url for x in t.turn] == ["turn:t:3478?transport=udp"] and t.turn[0].username == "u"
        assert t.signalling == "wss://s/LilyRTC" and t.hosts() == ["t", "s"]
    p.write_text("{}")
    with pytest.raises(UsageError, match="no callConfigJson"):
        from_media_info(str(p))
    p.write_text("{not json")
    with pytest.raises(UsageError, match="not JSON"):
        from_media_info(str(p))


def test_html_report_escapes(tmp_path):
    from lab.probe import report
    r = {"verdict": "problem", "started": "t", "machine": {"system": "Linux", "release": "x", "node": "<b>n</b>"},
         "findings": [{"id": "x", "severity": "problem", "sentence": "<script>", "scenarios": []}],
         "measurements": {"os": "linux", "ephemeral_range": "1-2", "duration_s": 1, "packets_sent": 1,
                          "targets": {"source": "s"}, "names": [], "turn": [], "turn_tcp443": []}}
    html = report.render(r, "html")
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert "<script>" in report.render(r, "md")


def test_a_local_firewall_refusing_to_send_is_udp3478_blocked():
    from lab.probe.measure import stun_summary
    rows = [{"port": p, "bound": p, "sent": 0, "replies": 0, "rtt_ms": [], "mapped": {},
             "send_errors": ["[Errno 1] Operation not permitted"]} for p in LINUX]
    s = stun_summary({"destinations": ["203.0.113.10:3478"], "local_ip": "10.0.0.2", "ports": rows})
    found = signatures.findings(measured(s))
    assert [f.id for f in found] == ["udp3478-blocked"] and "refuses to send" in found[0].sentence


def stream(rtts):
    from lab.probe.measure import stream_summary
    return dict(stream_summary({"rtts_ms": rtts}), rtts_ms=rtts)


HOLD_LOST = {"idle_s": 35.0, "before_ms": 3.0, "after_ms": None, "mapped_before": "198.51.100.2:50000",
             "mapped_after": "198.51.100.2:50000", "again_ms": 2.5}


@pytest.mark.parametrize("hold, expected", [
    (HOLD_LOST, ["nat-hold"]),
    (dict(HOLD_LOST, after_ms=2.0, again_ms=None), []),                 # the mapping held
    (dict(HOLD_LOST, again_ms=None), []),       # same address, nothing even after speaking: not the NAT's silence
    (dict(HOLD_LOST, again_ms=None, mapped_after="198.51.100.2:9288"), ["nat-hold"]),   # a new port: forgotten
    (dict(HOLD_LOST, again_ms=None, mapped_after=None), []),           # the path died altogether
    ({"error": "CreatePermission refused"}, []),                        # no test, no finding
])
def test_nat_hold(hold, expected):
    m = dict(measured(sweep(LINUX, [])), hold=hold)
    assert [f.id for f in signatures.findings(m) if f.severity == "problem"] == expected


def test_nat_hold_names_a_moved_mapping():
    m = dict(measured(sweep(LINUX, [])), hold=dict(HOLD_LOST, mapped_after="198.51.100.2:61234"))
    (f,) = signatures.findings(m)
    assert "became 198.51.100.2:61234" in f.sentence and "nat-hold-30s" in f.sentence




HOL = [30.0] * 60 + [260.0, 240.0, 220.0, 200.0] + [30.0] * 136            # one TCP stall: 4 held back
@pytest.mark.parametrize("rtts, expected", [
    ([30.0] * 200, []),
    (HOL, ["tcp-tunnel"]),
    (HOL[:-1] + [None], []),                             # a packet lost: UDP, not a TCP tunnel
    ([30.0] * 100 + [260.0] + [30.0] * 99, []),          # one late packet alone: a queue, not a stall
    ([30.0] * 100 + [140.0, 150.0, 140.0, 135.0] + [30.0] * 96, []),     # a run, but short of a retransmission
    ([30.0] * 100 + [260.0, 240.0, 220.0] + [30.0] * 97, []),            # three in a row: a queue
    ([30.0] * 190 + [None] * 10, ["loss"]),              # 5 % lost on the stream
    (HOL[:80], []),                                      # too short a stream to judge
])
def test_tcp_tunnel_in_the_stream(rtts, expected):
    m = dict(measured(sweep(LINUX, [])), stream=stream(rtts))
    assert [f.id for f in signatures.findings(m) if f.severity == "problem"] == expected


def test_a_tcp_tunnel_explains_a_high_sweep_rtt():
    m = dict(measured(sweep(LINUX, [], rtt=230.0)), stream=stream(HOL))
    assert [f.id for f in signatures.findings(m) if f.severity == "problem"] == ["tcp-tunnel"]
