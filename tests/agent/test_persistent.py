"""The persistent peer connection's rules (lab/agent/persistent.py), with a scripted peer and
signalling channel on the fake clock: what is sent on the kept channel, when ICE is restarted
and when the connection is torn down. Whole calls through a NAT, both engines:
tests/fidelity/persistent/."""

import asyncio

import pytest
from fakeclock import run
from fakes import FakePeer, FakeSignalling, cand

from lab.agent.persistent import ICE_RESTART_AFTER, PersistentOptions, PersistentSession
from lab.agent.timeline import Timeline


class Media:
    def __init__(self):
        self.sent = self.received = 0

    async def stats(self):
        return {"packets_sent": self.sent, "packets_received": self.received, "packets_lost": 0}


class Peer(FakePeer):
    """Audio at 50 packets a second while ``receiving``; the rest as FakePeer."""

    def __init__(self, **kw):
        super().__init__(**kw)
        self.media = Media()
        self.receiving = True

    async def talk(self, duration):
        await asyncio.sleep(duration)
        self.media.sent += int(duration * 50)
        if self.receiving:
            self.media.received += int(duration * 50)
        return {"silent_audio": False, **await self.media.stats()}


class Signalling(FakeSignalling):
    def __init__(self, **kw):
        super().__init__(**kw)
        self.requests: list[tuple[str, dict]] = []

    async def request(self, method, params, timeout):
        self.requests.append((method, params))
        self.sent.append(method)
        if method == "invite":
            return self.answer
        return {}


def session(tl, legs, **opts):
    def make():
        leg = (Peer(), Signalling(answer={**Signalling().answer, "peerConnectionId": "pc1",
                                          "peerConnectionToken": "pct", "inactivityDuration": opts.pop("inactivity", 60000)}))
        legs.append(leg)
        return leg
    return PersistentSession(make, call_id="c1", call_context_token="tok", timeline=tl, talk_time=3.0,
                             options=PersistentOptions(calls=opts.get("calls", 2), idle=opts.get("idle", 20.0)))


def test_setup_invite_then_calls_on_the_kept_connection():
    legs = []

    async def main():
        tl = Timeline(clock=asyncio.get_running_loop().time)
        out = await session(tl, legs).run()
        return out, tl

    out, tl = run(main())
    assert out.reached_talking and not out.quality["silent_audio"]
    assert len(legs) == 1                     # one peer connection for both calls
    sig = legs[0][1]
    method, params = sig.requests[0]
    assert method == "invite" and params["persistentConnection"] is True and params["callContextToken"] is None
    assert [m for m, _ in sig.requests[1:]] == ["connectContact", "disconnectContact"] * 2
    assert "bye" not in sig.sent
    states = [e["name"] for e in tl.as_list() if e["kind"] == "state"]
    assert states.count("ConnectContactState") == 2 and "GrabLocalMediaState" in states
    # ConnectContactState goes to TalkingState at once: no getUserMedia, no gathering, no invite
    cc = [e["t"] for e in tl.as_list() if e["name"] == "ConnectContactState"]
    talking = [e["t"] for e in tl.as_list() if e["name"] == "TalkingState"]
    assert all(abs(a - b) < 1e-6 for a, b in zip(cc, talking))


def test_disconnected_before_the_call_is_silent_and_never_restarted():
    legs = []

    async def main():
        loop = asyncio.get_running_loop()
        tl = Timeline(clock=loop.time)
        s = session(tl, legs)

        def cut():                         # the path dies while the connection idles
            tl.add("ice", "disconnected")
            legs[0][0].receiving = False
        loop.call_later(10.0, cut)
        return await s.run(), tl

    out, tl = run(main())
    assert out.reached_talking and out.quality["silent_audio"]
    assert not [e for e in tl.as_list() if e["name"] == "IceRestartSubstate"]
    assert [e for e in tl.as_list() if e["name"] == "health-check" and e["kept"] is False]
    assert "bye" in legs[0][1].sent and legs[0][0].closed      # torn down when the call ended


def test_disconnected_during_a_call_restarts_ice_3s_later():
    legs = []

    async def main():
        loop = asyncio.get_running_loop()
        tl = Timeline(clock=loop.time)
        s = session(tl, legs, calls=1)
        s.talk_time = 10.0
        loop.call_later(2.0, tl.add, "ice", "disconnected")
        return await s.run(), tl

    out, tl = run(main())
    t = {e["name"]: e["t"] for e in tl.as_list()}
    assert abs(t["IceRestartSubstate"] - t["disconnected"] - ICE_RESTART_AFTER) < 0.2


def test_inactivity_timer_tears_down_and_the_next_call_starts_afresh():
    legs = []

    async def main():
        tl = Timeline(clock=asyncio.get_running_loop().time)
        return await session(tl, legs, idle=20.0, inactivity=10000).run(), tl

    out, tl = run(main())
    assert out.reached_talking and not out.quality["silent_audio"]
    assert len(legs) == 2                     # a new set-up for the second call
    assert [e["reason"] for e in tl.as_list() if e["name"] == "destroyed"] == ["inactivity timer"]


def test_the_agent_config_checks_the_option(tmp_path):
    import json

    import pytest

    from lab.agent.__main__ import ConfigError, load

    def cfg(persistent):
        p = tmp_path / "agent.json"
        p.write_text(json.dumps({"callId": "c1", "mediaInfo": {}, "persistent": persistent}))
        return str(p)

    _, _, _, opts = load(cfg({"calls": 3, "idle": 5}))
    assert opts.persistent == PersistentOptions(calls=3, idle=5.0)
    for bad, words in (({"calls": 0}, "at least 1"), ({"idle": -1}, ">= 0"), ({"idel": 5}, "persistent.idel: unknown"),
                       ("yes", "must be a mapping")):
        with pytest.raises(ConfigError, match=words):
            load(cfg(bad))


def test_a_channel_the_path_broke_is_opened_again():
    from websockets.exceptions import ConnectionClosedError

    legs = []

    class Broken(Signalling):
        def __init__(self, **kw):
            super().__init__(**kw)
            self.broken = False
            self.reconnects = 0

        async def request(self, method, params, timeout):
            if self.broken and method != "invite":
                self.broken = False
                raise ConnectionClosedError(None, None)
            return await super().request(method, params, timeout)

        async def connect(self, timeout, max_retries):
            self.reconnects += 1

    async def main():
        loop = asyncio.get_running_loop()
        tl = Timeline(clock=loop.time)
        s = session(tl, legs)
        sig = Broken(answer={**Signalling().answer, "peerConnectionToken": "pct"})
        s.make_leg = lambda: legs.append((Peer(), sig)) or legs[-1]
        loop.call_later(10.0, setattr, sig, "broken", True)
        return await s.run(), tl, sig

    out, tl, sig = run(main())
    assert out.reached_talking and sig.reconnects == 2          # the set-up's, then the reconnect
    assert [e for e in tl.as_list() if e["name"] == "reconnecting"]
    assert [m for m, _ in sig.requests].count("connectContact") == 2


# -- the ICE restart (IceRestartSubstate .. AcceptSubstate), on the fake clock -----------------

class RestartPeer(Peer):
    """A peer that can restart: the restart's gathering gives ``restart_candidates_at``, and
    the media comes back ``back_after`` seconds after the answer (None: never)."""

    def __init__(self, restart_candidates_at=(0.05,), back_after=0.5, **kw):
        super().__init__(**kw)
        self.ice_servers = [{"urls": ["turn:203.0.113.10:3478?transport=udp"]}]
        self.restart_candidates_at = restart_candidates_at
        self.back_after = back_after
        self.offers = 0
        self.tl = None

    async def restart_offer(self, servers):
        self.offers += 1
        return f"v=0\r\na=ice-ufrag:new{self.offers}\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n"

    def restart_gathering(self, on_candidate, on_complete):
        loop = asyncio.get_running_loop()
        for i, t in enumerate(self.restart_candidates_at):
            loop.call_later(t, on_candidate, cand(20 + i))
        if not self.restart_candidates_at:
            loop.call_later(20.0, on_complete)          # never: the 8 s timer ends it

    async def restart_media(self, sdp, remote, timeout=None):
        if self.back_after is None:
            raise ConnectionError("no pair")
        await asyncio.sleep(self.back_after)
        self.tl.add("ice", "connected")
        self.receiving = True
        self.media.received += 1


class Channel:
    """A restart's channel: answers the invite after 0.05 s, or as ``behaviour`` says."""

    def __init__(self, log, behaviour="answer"):
        self.log = log
        self.behaviour = behaviour
        self.sent = []

    async def connect(self, timeout, max_retries):
        self.log.append(("connect", asyncio.get_running_loop().time()))

    async def request(self, method, params, timeout):
        from lab.agent.signalling import RPCError
        self.sent.append((method, params))
        self.log.append((method, asyncio.get_running_loop().time()))
        if self.behaviour == "silent":
            await asyncio.sleep(timeout)    # what the real channel does: a timeout at the timer
            raise asyncio.TimeoutError()
        if self.behaviour == "stale":
            raise RPCError(400, "Stale Peer Connection")
        if self.behaviour == "busy":
            raise RPCError(486, "Busy")
        await asyncio.sleep(0.05)
        return {"sdp": "v=0\r\na=ice-ufrag:edge2\r\n", "candidates": [cand(30)], "peerConnectionId": "pc1",
                "peerConnectionToken": "pct2"}

    async def accept(self):
        self.sent.append(("accept", {}))

    async def close(self):
        pass


def restart_run(cut_at=2.0, talk=20.0, behaviour="answer", recover_at=None, **peer):
    """One persistent call of ``talk`` s whose path dies ``cut_at`` s in (ICE disconnected)."""
    legs, channels, log = [], [], []

    async def main():
        loop = asyncio.get_running_loop()
        tl = Timeline(clock=loop.time)
        s = session(tl, legs, calls=1)
        s.talk_time = talk

        def make():
            p = RestartPeer(**peer)
            p.tl = tl
            leg = (p, Signalling(answer={**Signalling().answer, "peerConnectionId": "pc1", "peerConnectionToken": "pct",
                                         "inactivityDuration": 60000}))
            legs.append(leg)
            return leg
        s.make_leg = make

        def channel(contact_id, token):
            ch = Channel(log, behaviour)
            ch.contact = (contact_id, token)
            channels.append(ch)
            return ch
        s.make_channel = channel

        def cut():
            tl.add("ice", "disconnected")
            legs[0][0].receiving = False
        loop.call_later(cut_at, cut)
        if recover_at is not None:
            loop.call_later(recover_at, tl.add, "ice", "connected")
        return await s.run(), tl

    out, tl = run(main())
    return out, tl.as_list(), channels, log


def test_a_restart_runs_the_substates_and_brings_audio_back():
    out, events, channels, log = restart_run()
    subs = [e["name"] for e in events if e["kind"] == "substate"]
    assert subs == ["ConnectedSubstate", "IceRestartSubstate", "SetLocalSessionDescriptionSubstate",
                    "ConnectSignalingAndIceCollectionSubstate", "InviteAnswerSubstate", "AcceptSubstate",
                    "ConnectedSubstate"]
    t = {e["name"]: e["t"] for e in events}
    # the library's timer runs from the state change, not from when a poll noticed it
    assert t["IceRestartSubstate"] - t["disconnected"] == pytest.approx(ICE_RESTART_AFTER, abs=0.01)
    # the invite: on a new channel named after the contact, iceRestart, the kept peer connection
    assert len(channels) == 1 and channels[0].contact == ("c1-1", "tok")
    method, params = channels[0].sent[0]
    assert method == "invite" and params["iceRestart"] is True and params["peerConnectionId"] == "pc1"
    assert params["peerConnectionToken"] == "pct" and params["callContextToken"] == "tok"
    assert params["contactId"] == "c1-1" and params["persistentConnection"] is True
    assert len(params["candidates"]) == 1 and "url" not in params["candidates"][0]
    # the accept, then the new channel is the manager's: the hang-up goes on it, with the
    # restart answer's token
    assert [m for m, _ in channels[0].sent] == ["invite", "accept", "disconnectContact"]
    assert channels[0].sent[2][1]["peerConnectionToken"] == "pct2"
    done = next(e for e in events if e["kind"] == "ice-restart")
    assert done["name"] == "completed"
    back = next(e for e in events if e["name"] == "audio-back")
    assert back["t"] - t["IceRestartSubstate"] == pytest.approx(0.6, abs=0.2)
    assert not [e for e in events if e["kind"] == "error"] and out.reached_talking and out.rtc_error is None


def test_invites_unanswered_are_retried_3_times_1s_apart_then_connected_again_without_error():
    out, events, channels, log = restart_run(behaviour="silent", talk=40.0)
    invites = [t for m, t in log if m == "invite"]
    assert len(invites) == 4                         # the attempt and 3 retries
    gaps = [b - a for a, b in zip(invites, invites[1:])]
    assert gaps == pytest.approx([5.0 + 1.0] * 3, abs=0.1)   # MAX_INVITE_DELAY, then the 1 s retry interval
    subs = [e["name"] for e in events if e["kind"] == "substate"]
    assert subs[-2:] == ["InviteAnswerSubstate", "ConnectedSubstate"]
    failed = next(e for e in events if e["kind"] == "ice-restart")
    assert failed["name"] == "failed" and failed["reason"] == "invite"
    assert not [e for e in events if e["kind"] == "error"] and out.rtc_error is None


def test_stale_peer_connection_is_retried_busy_is_not():
    _, events, channels, _ = restart_run(behaviour="stale", talk=30.0)
    assert len(channels) == 4
    _, events, channels, _ = restart_run(behaviour="busy")
    assert len(channels) == 1
    failed = next(e for e in events if e["kind"] == "ice-restart")
    assert failed["name"] == "failed" and failed["reason"] == "USER_BUSY"


def test_no_candidate_within_the_ice_timer_ends_the_restart():
    _, events, channels, _ = restart_run(restart_candidates_at=())
    t = {e["name"]: e["t"] for e in events}
    assert t["failed"] - t["IceRestartSubstate"] == pytest.approx(8.0, abs=0.1)
    assert channels == []                            # no invite without a candidate
    assert next(e for e in events if e["kind"] == "ice-restart")["reason"] == "no ICE candidate"


def test_a_network_that_recovers_within_3s_is_not_restarted():
    _, events, channels, _ = restart_run(recover_at=4.0)
    assert not [e for e in events if e["name"] == "IceRestartSubstate"] and channels == []
    assert any(e.get("message") == "The network recovered, IceRestart cancelled" for e in events)


def test_a_restart_whose_checks_fail_leaves_the_call_silent_without_error():
    out, events, _, _ = restart_run(back_after=None)
    assert next(e for e in events if e["kind"] == "ice-restart")["name"] == "completed"   # the library's view
    assert [e for e in events if e["name"] == "restart_failed"] and not [e for e in events if e["name"] == "audio-back"]
    assert out.quality["silent_audio"] and out.rtc_error is None
