"""The media edge's ICE restart (lab/services/media/edge.py ``MediaEdge.restart``, over
lab/core/icerestart.py) and the signalling mock's answer to an ``iceRestart`` invite.

The edge answers with host candidates here (``candidates="host"``) and a plain aiortc peer
connection stands in for the browser, restarting with the same Connection swap, so the test
needs no lab: the restart must keep the DTLS session (same transport objects, same
fingerprint and role) and the audio both ways, on new ICE credentials and a new pair."""

import asyncio
import io
import json
import re
import sys
from pathlib import Path

import pytest
from aioice import Connection
from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.sdp import SessionDescription, candidate_from_sdp

from lab.core import icerestart
from lab.core.audio import AGENT_TONE, SourceTrack, tone_samples
from lab.services.media.edge import MediaEdge
from lab.services.pki import LabCA
from lab.services.signalling import CallPlan, SignallingServer

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "agent"))


def line(sdp, prefix):
    return next(ln for ln in sdp.split("\r\n") if ln.startswith(prefix))


async def received(pc):
    n = 0
    for r in pc.getReceivers():
        for s in (await r.getStats()).values():
            if type(s).__name__ == "RTCInboundRtpStreamStats":
                n += s.packetsReceived
    return n


async def browser_offer():
    pc = RTCPeerConnection()          # host candidates on this machine's addresses
    pc.addTrack(SourceTrack(lambda start, n: tone_samples(AGENT_TONE, start, n)))
    await pc.setLocalDescription(await pc.createOffer())
    sdp = pc.localDescription.sdp
    cands = [{"candidate": ln[2:], "sdpMid": "0", "sdpMLineIndex": 0}
             for ln in sdp.split("\r\n") if ln.startswith("a=candidate:")]
    return pc, sdp, cands


async def set_answer(pc, answer):
    sdp = answer["sdp"].replace("\r\na=silenceSupp:off - - - -", "")
    await pc.setRemoteDescription(RTCSessionDescription(sdp, "answer"))
    for c in answer["candidates"]:
        cand = candidate_from_sdp(c["candidate"].split(":", 1)[1])
        cand.sdpMid, cand.sdpMLineIndex = "0", 0
        await pc.addIceCandidate(cand)


async def until(pred, timeout=10.0):
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while loop.time() < end:
        if await pred():
            return True
        await asyncio.sleep(0.05)
    return False


def test_edge_restarts_ice_under_the_same_dtls_session():
    async def main():
        edge = MediaEdge([], log=None, candidates="host")
        pc, offer, cands = await browser_offer()
        answer = await edge.answer("c1", offer, cands)
        await set_answer(pc, answer)
        await edge.accept("c1")
        call = edge.calls["c1"]
        assert await until(lambda: _both_ways(pc, call.pc)), "no audio before the restart"

        edge_ice = call.pc.getTransceivers()[0].receiver.transport.transport
        edge_dtls = call.pc.getTransceivers()[0].receiver.transport
        old_edge_conn = edge_ice._connection
        ice = pc.getTransceivers()[0].receiver.transport.transport
        old_conn = ice._connection

        # the browser's restart: new credentials, a new gathering, the same fingerprint
        conn = Connection(ice_controlling=True)
        await conn.gather_candidates()
        new_offer = re.sub(r"a=ice-ufrag:\S+", f"a=ice-ufrag:{conn.local_username}", offer)
        new_offer = re.sub(r"a=ice-pwd:\S+", f"a=ice-pwd:{conn.local_password}", new_offer)
        new_cands = [{"candidate": "candidate:" + c.to_sdp(), "sdpMid": "0", "sdpMLineIndex": 0}
                     for c in conn.local_candidates]
        restarted = await edge.restart("c1", new_offer, new_cands)
        remote = SessionDescription.parse(restarted["sdp"]).media[0]
        await icerestart.restart(ice, conn, remote.ice, icerestart.remote_candidates(restarted["candidates"]),
                                 timeout=10)
        await until(lambda: _swapped(edge_ice, old_edge_conn))
        before_agent, before_edge = await received(pc), await received(call.pc)
        await asyncio.sleep(1.0)
        out = {
            "answer": answer, "restarted": restarted,
            "edge_swapped": edge_ice._connection is not old_edge_conn,
            "agent_swapped": ice._connection is not old_conn,
            "same_dtls": call.pc.getTransceivers()[0].receiver.transport is edge_dtls,
            "dtls_state": edge_dtls.state, "ice_state": call.pc.iceConnectionState,
            "agent_gain": await received(pc) - before_agent, "edge_gain": await received(call.pc) - before_edge,
            "accepted": call.accepted.is_set(),
        }
        await pc.close()
        await edge.close()
        return out

    out = asyncio.run(main())
    a, r = out["answer"]["sdp"], out["restarted"]["sdp"]
    assert line(a, "a=ice-ufrag:") != line(r, "a=ice-ufrag:") and line(a, "a=ice-pwd:") != line(r, "a=ice-pwd:")
    assert line(a, "a=setup:") == line(r, "a=setup:") and line(a, "a=fingerprint:") == line(r, "a=fingerprint:")
    assert line(a, "o=").split()[1] == line(r, "o=").split()[1]          # the same session, a new version
    assert int(line(r, "o=").split()[2]) == int(line(a, "o=").split()[2]) + 1
    assert out["edge_swapped"] and out["agent_swapped"] and out["same_dtls"] and out["accepted"]
    assert out["dtls_state"] == "connected" and out["ice_state"] == "completed"
    assert out["agent_gain"] > 20 and out["edge_gain"] > 20           # 50 packets a second both ways


async def _both_ways(a, b):
    return await received(a) > 10 and await received(b) > 10


async def _swapped(ice, old):
    return ice._connection is not old


def test_restart_for_an_unknown_call_is_a_key_error():
    async def main():
        edge = MediaEdge([], log=None, candidates="host")
        with pytest.raises(KeyError):
            await edge.restart("nobody", "v=0\r\n", [])
    asyncio.run(main())


def test_mock_answers_a_restart_only_for_the_peer_connection_it_named(tmp_path):
    """The restart invite names the peer connection by the id and token of an earlier answer,
    on any channel; a stale id or token is 400 Stale Peer Connection, a bad offer 400, and
    neither reaches the edge."""
    from lab.agent.signalling import RPCError, SignallingChannel
    from lab.agent.timeline import Timeline

    ca = LabCA.load_or_create(tmp_path / "ca")
    issued = ca.issue("signalling", dns=["localhost"], ips=["127.0.0.1"])
    restarts = []

    async def answerer(call_id, offer, cands):
        return {"sdp": "v=0\r\na=ice-ufrag:e1\r\n", "candidates": [{"candidate": "candidate:1 1 udp 1 1.2.3.4 5 typ host"}]}

    async def restarter(call_id, offer, cands):
        restarts.append(call_id)
        return {"sdp": "v=0\r\na=ice-ufrag:e2\r\n", "candidates": [{"candidate": "candidate:2 1 udp 1 1.2.3.4 6 typ host"}]}

    offer = "v=0\r\na=ice-ufrag:abcd\r\na=ice-pwd:0123456789abcdef01234567\r\n"
    cand = [{"candidate": "candidate:3 1 udp 1 1.2.3.4 7 typ relay", "sdpMid": "0", "sdpMLineIndex": 0}]

    async def main():
        srv = SignallingServer(answerer=answerer, restarter=restarter, ssl=issued.server_context(), log=io.StringIO())
        _, port = await srv.start("127.0.0.1", 0)
        ep = f"wss://localhost:{port}/LilyRTC"
        srv.add_call("c1", CallPlan(""))
        setup = SignallingChannel(ep, "c1", "", timeline=Timeline(), ssl=ca.client_context())
        await setup.connect()
        first = await setup.request("invite", {"sdp": offer, "candidates": cand, "persistentConnection": True,
                                               "callContextToken": None}, 5)
        contact = SignallingChannel(ep, "c1-1", "tok", timeline=Timeline(), ssl=ca.client_context())
        await contact.connect()
        base = {"sdp": offer, "candidates": cand, "persistentConnection": True, "callContextToken": "tok",
                "contactId": "c1-1", "iceRestart": True, "peerConnectionId": first["peerConnectionId"],
                "peerConnectionToken": first["peerConnectionToken"]}
        results = {}
        for name, params in (("stale-token", {**base, "peerConnectionToken": "nope"}),
                             ("unknown-id", {**base, "peerConnectionId": "nope"}),
                             ("no-token", {**base, "peerConnectionToken": None}),
                             ("no-ice", {**base, "sdp": "v=0\r\n"}),
                             ("bad-candidates", {**base, "candidates": "x"}),
                             ("good", base)):
            try:
                results[name] = await contact.request("invite", params, 5)
            except RPCError as exc:
                results[name] = (exc.code, exc.message)
        await setup.close()
        await contact.close()
        await srv.close()
        return first, results

    first, results = asyncio.run(main())
    for name in ("stale-token", "unknown-id", "no-token"):
        assert results[name] == (400, "Stale Peer Connection"), name
    for name in ("no-ice", "bad-candidates"):
        assert results[name][0] == 400 and "Stale" not in results[name][1], name
    good = results["good"]
    assert restarts == ["c1"]                       # only the good one reached the edge, under the set-up's call
    assert good["peerConnectionId"] == first["peerConnectionId"]
    assert good["peerConnectionToken"] == first["peerConnectionToken"]
    assert "e2" in good["sdp"] and json.dumps(good["candidates"]).count("candidate:2") == 1
