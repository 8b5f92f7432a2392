"""The LilyRTC mock over wss with the lab CA, driven by the agent's real signalling channel.

All cases run side by side (about 10 s: the connect timeout case)."""

import asyncio
import io
import json
import socket
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "agent"))
from fakes import FakePeer, cand  # noqa: E402

from lab.agent import errors, session as S  # noqa: E402
from lab.agent.session import RTCSession  # noqa: E402
from lab.agent.signalling import SignallingChannel  # noqa: E402
from lab.agent.timeline import Timeline  # noqa: E402
from lab.services.pki import LabCA  # noqa: E402
from lab.services.signalling import CallPlan, SignallingServer, static_answerer  # noqa: E402

ANSWER = "v=0\r\no=AmazonConnect 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n"


async def place(endpoint, call_id, ctx, ssl, token=None, talk_time=0.05):
    tl = Timeline()
    sig = SignallingChannel(endpoint, call_id, ctx, timeline=tl, ssl=ssl)
    return await RTCSession(FakePeer(), sig, call_context_token=token or ctx, timeline=tl, talk_time=talk_time).run()


def since(out, name, state):
    t0 = next(e["t"] for e in out.timeline if e["kind"] == "state" and e["name"] == state)
    return next(e["t"] for e in out.timeline if e["name"] == name) - t0


def test_signalling_mock(tmp_path):
    ca = LabCA.load_or_create(tmp_path / "ca")
    issued = ca.issue("signalling", dns=["localhost"], ips=["127.0.0.1"])
    other_ca = LabCA.load_or_create(tmp_path / "other")
    log = io.StringIO()
    accepted, byes = [], []

    async def on_accept(call_id):
        accepted.append(call_id)

    async def on_bye(call_id):
        byes.append(call_id)

    async def main():
        srv = SignallingServer(answerer=static_answerer(ANSWER, [cand(7)]), ssl=issued.server_context(),
                               on_accept=on_accept, on_bye=on_bye, log=log)
        host, port = await srv.start("127.0.0.1", 0)
        ep = f"wss://localhost:{port}/LilyRTC"
        srv.add_call("ok", CallPlan("ctx-ok"))
        srv.add_call("slow", CallPlan("ctx-slow", answer_delay=6.0))
        srv.add_call("busy", CallPlan("ctx-busy", behaviour="busy"))
        srv.add_call("denied", CallPlan("ctx-right"))
        srv.add_call("hungup", CallPlan("ctx-h"))

        async def cloud_hangs_up():
            while "hungup" not in accepted:
                await asyncio.sleep(0.02)
            await asyncio.sleep(0.3)
            await srv.hangup("hungup")
        # a port that refuses connections, and one that accepts TCP but never speaks
        refuse = socket.socket()
        refuse.bind(("127.0.0.1", 0))
        refused_port = refuse.getsockname()[1]
        refuse.close()
        mute = socket.socket()
        mute.bind(("127.0.0.1", 0))
        mute.listen(16)
        try:
            return await asyncio.gather(
                place(ep, "ok", "ctx-ok", ca.client_context()),
                place(ep, "slow", "ctx-slow", ca.client_context()),
                place(ep, "busy", "ctx-busy", ca.client_context()),
                place(ep, "denied", "ctx-wrong", ca.client_context()),
                place(ep, "nobody", "ctx", ca.client_context()),
                place(f"wss://localhost:{refused_port}/LilyRTC", "ok", "ctx-ok", ca.client_context()),
                place(f"wss://localhost:{mute.getsockname()[1]}/LilyRTC", "ok", "ctx-ok", ca.client_context()),
                place(ep, "ok", "ctx-ok", other_ca.client_context()),
                place(f"wss://localhost:{port}/NotLily", "ok", "ctx-ok", ca.client_context()),
                place(ep, "hungup", "ctx-h", ca.client_context(), talk_time=5.0),
                cloud_hangs_up(),
            )
        finally:
            mute.close()
            await srv.close()

    ok, slow, busy, denied, nobody, refused, hung, untrusted, wrong_path, hungup, _ = asyncio.run(main())

    assert ok.ok and [e["name"] for e in ok.timeline if e["kind"] == "state"][-2:] == [S.TALKING, S.DISCONNECTED]
    assert ok.remote_candidates == 1 and sorted(accepted) == ["hungup", "ok"] and byes == ["ok"]
    names = [e["name"] for e in ok.timeline if e["kind"] == "signalling"]
    assert names[:4] == ["connecting", "connected", "send invite", "recv result"]
    assert "send accept" in names and "send bye" in names

    assert slow.rtc_error == errors.SIGNALLING_HANDSHAKE_FAILURE
    assert since(slow, errors.SIGNALLING_HANDSHAKE_FAILURE, S.INVITE_ANSWER) == pytest.approx(5.0, abs=0.1)
    assert busy.rtc_error == errors.USER_BUSY and busy.softphone_error == "user_busy_error"
    assert denied.rtc_error == errors.SIGNALLING_HANDSHAKE_FAILURE
    assert any(e.get("error", {}).get("code") == 403 for e in denied.timeline if e["kind"] == "signalling")
    assert nobody.rtc_error == errors.CALL_NOT_FOUND and nobody.softphone_error is None

    # connection failures: refused -> 3 attempts in all (signaling.js), quickly; silent peer -> the 10 s timeout
    for out in (refused, untrusted, wrong_path):
        assert out.rtc_error == errors.SIGNALLING_CONNECTION_FAILURE
        assert len([e for e in out.timeline if e["name"] == "connect_failed"]) == 3
        assert since(out, errors.SIGNALLING_CONNECTION_FAILURE, S.CONNECT_SIGNALING_AND_ICE_COLLECTION) < 2
    assert hung.rtc_error == errors.SIGNALLING_CONNECTION_FAILURE
    assert since(hung, errors.SIGNALLING_CONNECTION_FAILURE, S.CONNECT_SIGNALING_AND_ICE_COLLECTION) == \
        pytest.approx(10.0, abs=0.1)

    # the cloud's bye during Talking: the call simply ends (the softphone answers the bye)
    assert hungup.state == S.DISCONNECTED and hungup.rtc_error is None
    assert any(e["name"] == "recv bye" for e in hungup.timeline) and any(
        e["name"] == "remote_hangup" for e in hungup.timeline)
    assert since(hungup, S.DISCONNECTED, S.TALKING) < 1.0

    events = [json.loads(line) for line in log.getvalue().splitlines()]
    assert {"event": "recv", "method": "invite"}.items() <= next(
        e for e in events if e.get("method") == "invite").items()
    assert any(e.get("status") == 404 for e in events)


def test_call_plan_validation():
    with pytest.raises(ValueError):
        CallPlan("x", behaviour="sometimes")
    with pytest.raises(ValueError):
        CallPlan("x", answer_delay=-1)
