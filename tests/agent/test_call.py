"""A whole call on loopback: coturn, the signalling mock over wss, the media edge, the agent
with Chrome-faithful gathering; audio verified by frequency at both ends."""

import asyncio
import io

import pytest
from coturn import coturn

from lab.agent import session as S
from lab.agent.audio import AGENT_TONE, CALLER_TONE
from lab.agent.peer import RelayPeer
from lab.agent.session import RTCSession
from lab.agent.signalling import SignallingChannel
from lab.agent.timeline import Timeline
from lab.services.media import MediaEdge
from lab.services.mediainfo import call_config, media_info
from lab.services.pki import LabCA
from lab.services.signalling import CallPlan, SignallingServer


def test_loopback_call_with_audio_both_ways(tmp_path):
    ca = LabCA.load_or_create(tmp_path / "ca")
    issued = ca.issue("signalling", dns=["localhost"], ips=["127.0.0.1"])
    log = io.StringIO()

    with coturn() as turn:
        async def main():
            info_edge = media_info(turn_urls=[turn.url("udp")], turn_secret=turn.secret,
                                   signalling_endpoint="unused", user="edge")
            edge = MediaEdge(call_config(info_edge)["iceServers"], log=log)

            async def bye(call_id):
                await edge.hangup(call_id)

            srv = SignallingServer(answerer=edge.answer, ssl=issued.server_context(),
                                   on_accept=edge.accept, on_bye=bye, log=log)
            _, port = await srv.start("127.0.0.1", 0)
            info = media_info(turn_urls=[turn.url("udp"), turn.url("tcp")], turn_secret=turn.secret,
                              signalling_endpoint=f"wss://localhost:{port}/LilyRTC")
            srv.add_call("c1", CallPlan(info["callContextToken"]))
            cfg = call_config(info)
            tl = Timeline()
            peer = RelayPeer(cfg["iceServers"], timeline=tl)
            sig = SignallingChannel(cfg["signalingEndpoint"], "c1", info["callContextToken"], timeline=tl,
                                    ssl=ca.client_context())
            try:
                out = await RTCSession(peer, sig, call_context_token=info["callContextToken"], timeline=tl,
                                       talk_time=3.0).run()
                return out, edge.caller_heard("c1")
            finally:
                await edge.close()
                await srv.close()

        out, (caller_hz, caller_db) = asyncio.run(main())

    states = [e["name"] for e in out.timeline if e["kind"] == "state"]
    assert states[-2:] == [S.TALKING, S.DISCONNECTED], out.timeline
    assert not q_media_failed(out), q_media_failed(out)
    q = out.quality
    assert not q["silent_audio"], q
    assert q["packets_sent"] > 50 and q["packets_received"] > 50, q
    assert q["packets_lost"] == 0, q
    assert q["heard_hz"] == pytest.approx(CALLER_TONE, abs=20), q      # the agent hears the caller
    assert caller_hz == pytest.approx(AGENT_TONE, abs=20) and caller_db > -30  # the caller hears the agent
    assert out.ok


def q_media_failed(out):
    return [e for e in out.timeline if e["kind"] == "media" and e["name"] == "failed"]
