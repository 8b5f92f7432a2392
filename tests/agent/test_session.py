"""The RTCSession's timing rules, with a scripted peer and signalling channel.

The point is the logic (which timer ends what, and when), not real time: the sessions run on
a fake event-loop clock (fakeclock.py), so the 8 s ICE timer fires at exactly 8.0 s, in
microseconds of wall time. Real timing is tested where it is the point: whole calls on
loopback (test_call.py, test_gather.py)."""

import asyncio

import pytest
from fakeclock import run
from fakes import FakePeer, FakeSignalling

from lab.agent import errors, session as S
from lab.agent.constants import Timers
from lab.agent.session import RTCSession
from lab.agent.timeline import Timeline

#: the timeline's clock is the loop's: on the fake clock times are exact but for float sums
TOL = 1e-6


def since(outcome, name, state):
    """Seconds from entering ``state`` to the first timeline event called ``name``."""
    tl = outcome.timeline
    t0 = next(e["t"] for e in tl if e["kind"] == "state" and e["name"] == state)
    return next(e["t"] for e in tl if e["name"] == name) - t0


async def call(peer=None, sig=None, **kw):
    return await RTCSession(peer or FakePeer(), sig or FakeSignalling(), call_context_token="tok",
                            talk_time=0.05, timeline=Timeline(clock=asyncio.get_running_loop().time), **kw).run()


def test_errors_map_like_streams():
    assert errors.softphone_error_type(errors.ICE_COLLECTION_TIMEOUT) == "ice_collection_timeout"
    assert errors.softphone_error_type(errors.USER_BUSY) == "user_busy_error"
    assert errors.softphone_error_type(errors.SIGNALLING_HANDSHAKE_FAILURE) == "signalling_handshake_failure"
    assert errors.softphone_error_type(errors.SIGNALLING_CONNECTION_FAILURE) == "signalling_connection_failure"
    assert errors.softphone_error_type(errors.GUM_TIMEOUT_FAILURE) == "microphone_not_shared"
    assert errors.softphone_error_type(errors.GUM_OTHER_FAILURE) == "microphone_not_shared"
    assert errors.softphone_error_type(errors.CALL_NOT_FOUND) is None
    for other in (errors.INVALID_REMOTE_SDP, errors.NO_REMOTE_ICE_CANDIDATE, errors.CREATE_OFFER_FAILURE,
                  errors.SET_LOCAL_DESCRIPTION_FAILURE, errors.SET_REMOTE_DESCRIPTION_FAILURE):
        assert errors.softphone_error_type(other) == "webrtc_error"
    assert errors.invite_error(486) == errors.USER_BUSY
    assert errors.invite_error(404) == errors.CALL_NOT_FOUND
    for code in (403, 400, 408, 409, 500, None):
        assert errors.invite_error(code) == errors.SIGNALLING_HANDSHAKE_FAILURE
    with pytest.raises(ValueError):
        errors.softphone_error_type("NOPE")


def test_normal_path_visits_every_state_in_order():
    sig = FakeSignalling()
    out = run(call(sig=sig))
    assert [e["name"] for e in out.timeline if e["kind"] == "state"] == [
        S.GRAB_LOCAL_MEDIA, S.CREATE_OFFER, S.SET_LOCAL_SESSION_DESCRIPTION,
        S.CONNECT_SIGNALING_AND_ICE_COLLECTION, S.INVITE_ANSWER, S.ACCEPT, S.TALKING, S.DISCONNECTED]
    assert out.ok and out.reached_talking and out.local_candidates == 1 and out.remote_candidates == 1
    assert sig.sent == ["invite", "accept", "bye"]


def test_hangup_enters_disconnected_at_once():
    """rtc_session.js TalkingState.hangup(): the bye is sent and the session transits to
    DisconnectedState in the same call; the signalling channel waits for the bye's answer
    (up to MAX_ACCEPT_BYE_DELAY_MS) on its own (issue 14 item 3)."""
    sig = FakeSignalling(bye_delay=5.0)         # never answered within the 2 s

    async def main():
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        out = await call(sig=sig)
        return out, sig.bye_done - t0, loop.time() - t0

    out, bye_done, total = run(main())
    assert out.ok and sig.sent == ["invite", "accept", "bye"]
    talking = next(e["t"] for e in out.timeline if e["name"] == S.TALKING)
    disconnected = next(e["t"] for e in out.timeline if e["name"] == S.DISCONNECTED)
    assert disconnected - talking < 0.05 + TOL, (talking, disconnected)      # talk_time 0.05 s, no wait
    assert bye_done > disconnected + 1.9         # the channel still waited its 2 s for the answer
    assert total < 2.5 + TOL


def test_timers_side_by_side():
    async def main():
        return await asyncio.gather(
            # 0: no candidate ever: the 8 s timer ends collection, zero candidates fails
            call(FakePeer(candidates_at=())),
            # 1: the first relay candidate ends collection at once; a second one comes too late
            call(FakePeer(candidates_at=(0.3, 0.31))),
            # 2: end-of-candidates with none: fails then, not at 8 s
            call(FakePeer(candidates_at=(), complete_at=0.2)),
            # 3: invite answered after 6 s: handshake failure at 5 s
            call(sig=FakeSignalling(answer_delay=6.0)),
            # 4: every WebSocket attempt fails fast: 3 attempts in all (signaling.js), then connection failure
            call(sig=FakeSignalling(connect_attempts=[("fail", 0.05)] * 10)),
            # 5: the WebSocket never opens: connection failure at the 10 s connect timeout
            call(sig=FakeSignalling(connect_attempts=())),
            # 6: ICE complete quickly, signalling slow (3 s): the state waits for both
            call(sig=FakeSignalling(connect_attempts=[("ok", 3.0)])),
            # 7: getUserMedia never answers: GUM_TIMEOUT_FAILURE at 10 s
            call(FakePeer(gum_delay=60)),
        )
    ice_timeout, first, early_end, invite, retries, connect_hang, wait_both, gum = run(main())

    assert ice_timeout.rtc_error == errors.ICE_COLLECTION_TIMEOUT
    assert ice_timeout.softphone_error == "ice_collection_timeout" and ice_timeout.local_candidates == 0
    assert since(ice_timeout, errors.ICE_COLLECTION_TIMEOUT, S.CONNECT_SIGNALING_AND_ICE_COLLECTION) == \
        pytest.approx(8.0, abs=TOL)

    assert first.ok and first.local_candidates == 1
    assert since(first, "collection_complete", S.CONNECT_SIGNALING_AND_ICE_COLLECTION) == pytest.approx(0.3, abs=TOL)
    assert any(e["kind"] == "candidate" and e["name"] == "late" for e in first.timeline)

    assert early_end.rtc_error == errors.ICE_COLLECTION_TIMEOUT
    assert since(early_end, errors.ICE_COLLECTION_TIMEOUT, S.CONNECT_SIGNALING_AND_ICE_COLLECTION) == \
        pytest.approx(0.2, abs=TOL)

    assert invite.rtc_error == errors.SIGNALLING_HANDSHAKE_FAILURE
    assert invite.softphone_error == "signalling_handshake_failure"
    assert since(invite, errors.SIGNALLING_HANDSHAKE_FAILURE, S.INVITE_ANSWER) == pytest.approx(5.0, abs=TOL)

    assert retries.rtc_error == errors.SIGNALLING_CONNECTION_FAILURE
    assert retries.softphone_error == "signalling_connection_failure"
    assert since(retries, errors.SIGNALLING_CONNECTION_FAILURE, S.CONNECT_SIGNALING_AND_ICE_COLLECTION) == \
        pytest.approx(3 * 0.05, abs=TOL)

    assert connect_hang.rtc_error == errors.SIGNALLING_CONNECTION_FAILURE
    assert since(connect_hang, errors.SIGNALLING_CONNECTION_FAILURE, S.CONNECT_SIGNALING_AND_ICE_COLLECTION) == \
        pytest.approx(10.0, abs=TOL)

    assert wait_both.ok
    assert since(wait_both, S.INVITE_ANSWER, S.CONNECT_SIGNALING_AND_ICE_COLLECTION) == pytest.approx(3.0, abs=TOL)

    assert gum.rtc_error == errors.GUM_TIMEOUT_FAILURE and gum.softphone_error == "microphone_not_shared"
    assert since(gum, errors.GUM_TIMEOUT_FAILURE, S.GRAB_LOCAL_MEDIA) == pytest.approx(10.0, abs=TOL)


@pytest.mark.parametrize("code,rtc,sp", [(486, errors.USER_BUSY, "user_busy_error"),
                                         (404, errors.CALL_NOT_FOUND, None),
                                         (403, errors.SIGNALLING_HANDSHAKE_FAILURE, "signalling_handshake_failure")])
def test_invite_errors(code, rtc, sp):
    out = run(call(sig=FakeSignalling(error_code=code)))
    assert (out.state, out.rtc_error, out.softphone_error) == (S.FAILED, rtc, sp)


@pytest.mark.parametrize("answer,rtc", [({"candidates": [{"candidate": "x"}]}, errors.INVALID_REMOTE_SDP),
                                        ({"sdp": "v=0", "candidates": []}, errors.NO_REMOTE_ICE_CANDIDATE)])
def test_bad_answers(answer, rtc):
    out = run(call(sig=FakeSignalling(answer=answer)))
    assert out.rtc_error == rtc and out.softphone_error == "webrtc_error"


def test_gum_error_and_custom_timers():
    out = run(call(FakePeer(gum_error=PermissionError("denied"))))
    assert out.rtc_error == errors.GUM_OTHER_FAILURE
    out = run(call(FakePeer(candidates_at=()), timers=Timers(ice=0.3)))
    assert since(out, errors.ICE_COLLECTION_TIMEOUT, S.CONNECT_SIGNALING_AND_ICE_COLLECTION) == \
        pytest.approx(0.3, abs=TOL)
