"""The emulated ICE restart end to end on loopback: coturn, the cloud (signalling mock and media
edge) and a call on the persistent peer connection whose path dies mid-call. The dead path
is the agent's old TURN allocations going deaf and mute (what a NAT that moved the flow to a
new port does to them); the restart's new allocations work. Whole labs, both engines:
tests/fidelity/restart/."""

import asyncio
import io
import json

from coturn import coturn

from lab.agent.call import CallOptions
from lab.agent.peer import RelayPeer
from lab.agent.persistent import ICE_RESTART_AFTER, PersistentOptions, PersistentSession
from lab.agent.signalling import SignallingChannel
from lab.agent.timeline import Timeline
from lab.services.media.cloud import CloudConfig, ConnectCloud


class Deaf:
    """A TURN client's receiver that drops everything: the path through it is gone."""

    def datagram_received(self, data, addr):
        pass

    def error_received(self, exc):
        pass

    def connection_lost(self, exc):
        pass


def kill(relays):
    for r in relays:
        r.transport.client.receiver = Deaf()
        r.transport.sendto = lambda data, addr: None


def test_a_mid_call_cut_is_restarted_and_the_audio_comes_back(tmp_path):
    log = io.StringIO()
    with coturn() as turn:
        async def main():
            cloud = ConnectCloud(CloudConfig(turn_secret=turn.secret, port=0, ca_dir=str(tmp_path / "ca"),
                                             agent_turn_urls=[turn.url("udp")]), log=log)
            await cloud.start()
            call = cloud.new_call("c1")
            cfg = json.loads(call["mediaInfo"]["callConfigJson"])
            ssl = cloud.ca.client_context()
            tl = Timeline()
            peers = []

            def leg():
                sig = SignallingChannel(cfg["signalingEndpoint"], "c1", "", timeline=tl, ssl=ssl)
                sig.url = sig.url.split("&contactCtx=")[0]
                peers.append(RelayPeer(cfg["iceServers"], timeline=tl, ssl=ssl))
                return peers[-1], sig

            def channel(contact_id, token):
                return SignallingChannel(cfg["signalingEndpoint"], contact_id, token, timeline=tl, ssl=ssl)

            session = PersistentSession(leg, call_id="c1", call_context_token=call["mediaInfo"]["callContextToken"],
                                        options=PersistentOptions(calls=1), timeline=tl, timers=CallOptions().timers,
                                        talk_time=22.0, make_channel=channel)

            async def cut():
                while not any(e["name"] == "TalkingState" for e in tl.as_list()):
                    await asyncio.sleep(0.05)
                await asyncio.sleep(2.0)
                tl.add("test", "cut")
                kill(peers[0].media.relays)
            try:
                out, _ = await asyncio.gather(session.run(), cut())
                return out, tl.as_list()
            finally:
                await cloud.close()

        out, events = asyncio.run(main())

    t = {}
    for e in events:
        t.setdefault(e["name"], e["t"])
    subs = [e["name"] for e in events if e["kind"] == "substate"]
    assert subs == ["ConnectedSubstate", "IceRestartSubstate", "SetLocalSessionDescriptionSubstate",
                    "ConnectSignalingAndIceCollectionSubstate", "InviteAnswerSubstate", "AcceptSubstate",
                    "ConnectedSubstate"], events
    assert 6.0 < t["disconnected"] - t["cut"] < 7.5
    assert abs(t["IceRestartSubstate"] - t["disconnected"] - ICE_RESTART_AFTER) < 0.5
    assert next(e for e in events if e["kind"] == "ice-restart")["name"] == "completed"
    after = [e for e in events if e["t"] >= t["IceRestartSubstate"] - 0.01]
    edge_log = [line for line in log.getvalue().splitlines() if "ice" in line]
    assert "restart_connected" in t and "audio-back" in t, "\n".join(map(json.dumps, after[-12:])) + "\n".join(edge_log)
    assert t["audio-back"] - t["IceRestartSubstate"] < 3.0
    # ICE connected again after the disconnection, and the call had audio afterwards
    assert any(e["kind"] == "ice" and e["name"] == "connected" and e["t"] > t["disconnected"] for e in events)
    assert not [e for e in events if e["kind"] == "error"] and out.rtc_error is None
    assert not out.quality["silent_audio"]
    edge = [json.loads(line) for line in log.getvalue().splitlines()]
    assert [e["event"] for e in edge if e.get("event", "").startswith("ice_restart")] == ["ice_restart", "ice_restarted"]
