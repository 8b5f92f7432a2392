"""Relay gathering against Debian's coturn on 127.0.0.1, through the real session.

Every case runs at once in one event loop (about 8 s of wall time): the slowest is the 8 s
ICE timer, which is the behaviour under test."""

import asyncio

import pytest
from coturn import black_hole_udp, coturn
from fakes import FakeSignalling

from lab.agent import errors, session as S
from lab.agent.gather import RelayGatherer, turn_urls
from lab.agent.peer import RelayPeer
from lab.agent.session import RTCSession
from lab.agent.stuntx import AIOICE, CHROME
from lab.agent.timeline import Timeline
from lab.agent.turnclient import TurnURL
from lab.services.mediainfo import turn_rest_credentials
from lab.services.pki import LabCA


def servers(urls, secret):
    user, cred = turn_rest_credentials(secret)
    return [{"urls": urls, "username": user, "credential": cred}]


async def place(urls, secret, profile="chrome", ssl=None):
    tl = Timeline()
    peer = RelayPeer(servers(urls, secret), profile=profile, timeline=tl, media=False, ssl=ssl)
    out = await RTCSession(peer, FakeSignalling(), call_context_token="t", timeline=tl, talk_time=0.05).run()
    return out


def ice_start(out):
    return next(e["t"] for e in out.timeline if e["name"] == S.CONNECT_SIGNALING_AND_ICE_COLLECTION)


def sends(out, url_label):
    t0 = next(e["t"] for e in out.timeline if e["kind"] == "stun" and e.get("url") == url_label)
    return [round(e["t"] - t0, 3) for e in out.timeline
            if e["kind"] == "stun" and e.get("url") == url_label and e["name"] == "send ALLOCATE"]


def test_turn_url_parsing():
    u = TurnURL.parse("turn:192.0.2.1:3478?transport=udp")
    assert (u.host, u.port, u.transport, u.secure) == ("192.0.2.1", 3478, "udp", False)
    u = TurnURL.parse("turns:turn.lab:443?transport=tcp")
    assert (u.host, u.port, u.transport, u.secure) == ("turn.lab", 443, "tcp", True)
    assert TurnURL.parse("turn:h").port == 3478 and TurnURL.parse("turns:h").port == 5349
    for bad in ("stun:h:3478", "turn:h?transport=sctp", "turns:h?transport=udp"):
        with pytest.raises(ValueError):
            TurnURL.parse(bad)
    got = turn_urls([{"urls": "stun:h"}, {"urls": ["turn:a", "turns:b:443"], "username": "u", "credential": "p"}])
    assert [(u.url, n, p) for u, n, p in got] == [("turn:a", "u", "p"), ("turns:b:443", "u", "p")]


def test_schedules_are_the_browsers_and_aioices():
    assert CHROME.send_offsets() == [0, .25, .75, 1.75, 3.75, 7.75, 15.75, 23.75, 31.75]
    assert CHROME.timeout() == pytest.approx(39.75)
    assert AIOICE.send_offsets() == [0, .5, 1.5, 3.5, 7.5, 15.5, 31.5]
    assert AIOICE.timeout() == pytest.approx(63.5)


def test_gathering_against_coturn(tmp_path):
    ca = LabCA.load_or_create(tmp_path / "ca")
    issued = ca.issue("turn", dns=["turn.lab"], ips=["127.0.0.1"])
    with coturn(tls=(issued.cert, issued.key)) as turn, black_hole_udp() as hole:
        dead = f"turn:127.0.0.1:{hole.getsockname()[1]}?transport=udp"
        dead_label = TurnURL.parse(dead).label

        async def first_candidate():
            loop = asyncio.get_running_loop()
            got = loop.create_future()
            g = RelayGatherer(servers([turn.url("udp")], turn.secret),
                              on_candidate=lambda r: got.done() or got.set_result(r),
                              on_complete=lambda: None)
            t0 = loop.time()
            g.start()
            relay = await asyncio.wait_for(got, 2)
            elapsed = loop.time() - t0
            await g.close()
            return relay, elapsed

        # alone first, on an idle event loop: the time to the first candidate is the point
        relay, elapsed = asyncio.run(first_candidate())

        async def main():
            return await asyncio.gather(
                place([turn.url("udp")], turn.secret),                      # open path
                place([dead], turn.secret),                                  # UDP silently dropped
                place([dead, turn.url("tcp")], turn.secret),                 # dead UDP, TCP open
                place([dead, turn.url("tls")], turn.secret, ssl=ca.client_context()),  # dead UDP, TLS open
                place([dead, turn.url("tcp")], turn.secret, "aiortc-default"),  # first URL only, 5 s cut-off
            )

        open_, dropped, tcp, tls, aiortc = asyncio.run(main())

    # open path: a relay candidate at once (about 5 ms on loopback; 0.1 s leaves room for a busy
    # machine: the issue's 2 x RTT + 20 ms is checked by bench, this checks there is no hidden wait)
    assert relay.candidate.type == "relay" and relay.candidate.host == "127.0.0.1"
    assert elapsed < 0.1
    assert open_.ok and open_.local_candidates == 1

    # dropped UDP: zero candidates, ice_collection_timeout 8.0 s after the ICE state began
    assert dropped.state == S.FAILED and dropped.rtc_error == errors.ICE_COLLECTION_TIMEOUT
    assert dropped.softphone_error == "ice_collection_timeout" and dropped.local_candidates == 0
    t_fail = next(e["t"] for e in dropped.timeline if e["name"] == errors.ICE_COLLECTION_TIMEOUT)
    assert t_fail - ice_start(dropped) == pytest.approx(8.0, abs=0.1)
    # Chrome's schedule: sends at 0, .25, .75, 1.75, 3.75, 7.75 s within the 8 s
    got = sends(dropped, dead_label)
    assert len(got) == 6
    for t, want in zip(got, CHROME.send_offsets()):
        assert t == pytest.approx(want, abs=0.04)

    # dead UDP beside an open TCP URL: the call goes on with the TCP relay
    assert tcp.ok and tcp.local_candidates == 1
    cand = next(e for e in tcp.timeline if e["kind"] == "candidate" and e["name"] == "relay")
    assert cand["url"].endswith("/tcp")
    # ... and the same over TLS (turns:), the server checked against the lab CA
    assert tls.ok and tls.local_candidates == 1
    cand = next(e for e in tls.timeline if e["kind"] == "candidate" and e["name"] == "relay")
    assert cand["url"].startswith("turns:")

    # aiortc-default: only the (dead) first URL, aioice's schedule, end-of-candidates at 5 s
    assert aiortc.rtc_error == errors.ICE_COLLECTION_TIMEOUT and aiortc.local_candidates == 0
    eoc = next(e["t"] for e in aiortc.timeline if e["name"] == "end_of_candidates")
    assert eoc - ice_start(aiortc) == pytest.approx(5.0, abs=0.1)
    assert not any(e.get("url", "").endswith("/tcp") for e in aiortc.timeline)
    got = sends(aiortc, dead_label)
    for t, want in zip(got, [0, .5, 1.5, 3.5]):
        assert t == pytest.approx(want, abs=0.04)
    assert len(got) == 4
