"""Whole calls on loopback: coturn, the cloud (signalling mock over wss + media edge), and
the agent with Chrome-faithful gathering; audio verified by frequency at both ends."""

import asyncio
import io
import re

import pytest
from coturn import black_hole_udp, coturn

from lab.agent import session as S
from lab.core.audio import AGENT_TONE, CALLER_TONE
from lab.agent.call import CallOptions, place_call
from lab.services.media.cloud import CloudConfig, ConnectCloud
from lab.services.media.edge import _answer_sdp


def test_loopback_calls(tmp_path):
    log = io.StringIO()
    with coturn() as turn, black_hole_udp() as hole:
        async def main():
            cloud = ConnectCloud(CloudConfig(turn_secret=turn.secret, port=0, ca_dir=str(tmp_path / "ca"),
                                             agent_turn_urls=[turn.url("udp"), turn.url("tcp")]), log=log)
            real_answer = cloud.signalling.answerer

            def into_hole(cands):
                return [{**c, "candidate": re.sub(r" 127\.0\.0\.1 \d+ typ", f" 127.0.0.1 {hole.getsockname()[1]} typ",
                                                  c["candidate"])} for c in cands]

            async def answerer(call_id, offer, candidates):
                # relay ports dropped: on loopback every relay shares 127.0.0.1 (TURN permissions
                # are per IP), so both sides' candidates are pointed into a black hole instead
                broken = call_id == "far-relay-dropped"
                answer = await real_answer(call_id, offer, into_hole(candidates) if broken else candidates)
                if broken:
                    answer["candidates"] = into_hole(answer["candidates"])
                return answer

            cloud.signalling.answerer = answerer
            await cloud.start()
            ok, silent = cloud.new_call("ok"), cloud.new_call("far-relay-dropped")
            try:
                results = await asyncio.gather(*(
                    place_call(c["callId"], c["mediaInfo"], ssl=cloud.ca.client_context(),
                               options=CallOptions(talk_time=3.0)) for c in (ok, silent)))
                return (*results, cloud.edge.caller_heard("ok"))
            finally:
                await cloud.close()

        out, silent, (caller_hz, caller_db) = asyncio.run(main())

    states = [e["name"] for e in out.timeline if e["kind"] == "state"]
    assert states[-2:] == [S.TALKING, S.DISCONNECTED], out.timeline
    assert not [e for e in out.timeline if e["kind"] == "media" and e["name"] == "failed"]
    q = out.quality
    assert not q["silent_audio"], q
    assert q["packets_sent"] > 50 and q["packets_received"] > 50, q
    assert q["packets_lost"] == 0, q
    assert q["heard_hz"] == pytest.approx(CALLER_TONE, abs=20), q      # the agent hears the caller
    assert caller_hz == pytest.approx(AGENT_TONE, abs=20) and caller_db > -30  # the caller hears the agent
    # from RTCP: aiortc sends a report every 0.5-1.5 s, so 3 s of talking bring several back;
    # on loopback the round trip is a few ms at most
    assert q["rtt_ms"] is not None and 0 <= q["rtt_ms"] < 500, q
    assert out.ok

    # far relay dropped: the softphone sees nothing wrong (Talking, no RTC error), audio is silent
    assert silent.reached_talking and silent.rtc_error is None and silent.state == S.DISCONNECTED
    assert silent.quality["silent_audio"] and silent.quality["packets_received"] == 0
    assert not silent.ok


def test_answer_looks_like_connects():
    sdp = ("v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\nm=audio 5000 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\n"
           "a=rtpmap:111 opus/48000/2\r\na=fmtp:111 usedtx=1\r\n"
           "a=candidate:1 1 udp 16777215 127.0.0.1 5000 typ relay raddr 0.0.0.0 rport 0\r\n"
           "a=end-of-candidates\r\n")
    out, cands = _answer_sdp(sdp)
    assert out.splitlines()[1].startswith("o=AmazonConnect ")
    assert "m=audio 5000 UDP/TLS/RTP/SAVPF 111 126" in out
    assert "a=fmtp:111 minptime=10;useinbandfec=1" in out and "usedtx=1" not in out
    assert "a=rtpmap:126 telephone-event/8000" in out and "a=silenceSupp:off - - - -" in out
    assert "a=candidate" not in out and "end-of-candidates" not in out
    assert cands == [{"candidate": "candidate:1 1 udp 16777215 127.0.0.1 5000 typ relay raddr 0.0.0.0 rport 0",
                      "sdpMid": "0", "sdpMLineIndex": 0}]
