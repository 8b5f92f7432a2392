"""TURN error answers, as the lab's server injects them, and how the emulated browser reacts
(issue 14 item 1). The server answers only authenticated Allocates by default (as coturn:
486/508 after the 401 round); ``pre_auth: true`` answers the first, unauthenticated one,
which Chrome ignores (it retransmits on its schedule and never ends gathering, so the
softphone's 8 s timer decides). Every case runs at once in one event loop (about 8 s)."""

import asyncio

from fakes import FakeSignalling
from services.turnlab import SECRET, Client, error, server

from lab.agent import errors, session as S
from lab.agent.peer import RelayPeer
from lab.agent.session import RTCSession
from lab.agent.timeline import Timeline
from lab.core import stun
from lab.services.mediainfo import turn_rest_credentials
from lab.services.turn.faults import control


async def place(port, profile="chrome"):
    user, cred = turn_rest_credentials(SECRET)
    ice = [{"urls": [f"turn:127.0.0.1:{port}?transport=udp"], "username": user, "credential": cred}]
    tl = Timeline()
    peer = RelayPeer(ice, profile=profile, timeline=tl, media=False)
    return await RTCSession(peer, FakeSignalling(), call_context_token="t", timeline=tl, talk_time=0.05).run()


def failed_at(out):
    ice = next(e["t"] for e in out.timeline if e["name"] == S.CONNECT_SIGNALING_AND_ICE_COLLECTION)
    return next(e["t"] for e in out.timeline if e["kind"] == "error") - ice


def test_injected_errors_come_after_authentication_unless_pre_auth(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    with server(tmp_path / "a") as after, server(tmp_path / "b") as before:
        assert control(after.cfg.control, {"faults": {"error": [{"method": "Allocate", "code": 486}]}})["ok"]
        assert control(before.cfg.control, {"faults": {"error": [
            {"method": "Allocate", "code": 486, "pre_auth": True}]}})["ok"]
        # the wire: by default the first Allocate still gets the 401 challenge, the
        # authenticated one the 486, signed; with pre_auth the first one gets the 486
        c = Client(after.udp)
        c.rest()
        assert error(c.allocate()) == 486
        raw = Client(before.udp).request(stun.ALLOCATE, [(stun.REQUESTED_TRANSPORT, bytes([17, 0, 0, 0]))])
        assert error(raw) == 486
        raw = Client(after.udp).request(stun.ALLOCATE, [(stun.REQUESTED_TRANSPORT, bytes([17, 0, 0, 0]))])
        assert error(raw) == 401

        async def all_calls():
            return await asyncio.gather(place(after.cfg.udp_port), place(before.cfg.udp_port),
                                        place(after.cfg.udp_port, "aiortc-default"),
                                        place(before.cfg.udp_port, "aiortc-default"))

        real, pre_auth, real_aio, pre_auth_aio = asyncio.run(all_calls())

    # a real (authenticated) 486 ends the URL at once: Chrome's OnAllocateError; 0 candidates
    assert real.rtc_error == errors.ICE_COLLECTION_TIMEOUT and failed_at(real) < 0.5, real.timeline
    assert any(e["name"] == "url_failed" and "486" in e["reason"] for e in real.timeline)
    # a pre-authentication 486: ignored, the Allocate resent on Chrome's schedule, the 8 s timer fires
    assert pre_auth.rtc_error == errors.ICE_COLLECTION_TIMEOUT
    assert abs(failed_at(pre_auth) - 8.0) < 0.1, failed_at(pre_auth)
    assert not any(e["name"] == "url_failed" for e in pre_auth.timeline)
    ignored = [e for e in pre_auth.timeline if e["name"] == "ignored ALLOCATE error"]
    assert ignored and all(e["code"] == 486 for e in ignored)
    sends = [e["t"] for e in pre_auth.timeline if e["name"] == "send ALLOCATE"]
    assert len(sends) == 6
    for t, want in zip(sends, [0, .25, .75, 1.75, 3.75, 7.75]):
        assert abs(t - sends[0] - want) < 0.05, sends
    # aioice (the aiortc-default profile) gives up on any error: at once both ways
    for out in (real_aio, pre_auth_aio):
        assert out.rtc_error == errors.ICE_COLLECTION_TIMEOUT and failed_at(out) < 0.5, out.timeline
