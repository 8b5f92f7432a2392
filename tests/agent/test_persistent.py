"""The persistent peer connection's rules (lab/agent/persistent.py), with a scripted peer and
signalling channel on the fake clock: what is sent on the kept channel, when ICE is restarted
and when the connection is torn down. Whole calls through a NAT, both engines:
tests/fidelity/persistent/."""

import asyncio

from fakeclock import run
from fakes import FakePeer, FakeSignalling

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
