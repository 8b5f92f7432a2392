import base64
import hashlib
import hmac
import json

from lab.agent.timeline import Timeline
from lab.services.mediainfo import call_config, media_info, turn_rest_credentials


def test_rest_credentials_are_coturns_scheme():
    user, password = turn_rest_credentials("s3cret", "agent1", ttl=600, now=1_700_000_000)
    assert user == "1700000600:agent1"
    assert password == base64.b64encode(hmac.new(b"s3cret", user.encode(), hashlib.sha1).digest()).decode()


def test_media_info_shape():
    info = media_info(turn_urls=["turn:192.0.2.10:3478?transport=udp"], turn_secret="s",
                      signalling_endpoint="wss://rtc.lab/LilyRTC")
    assert set(info) == {"callType", "autoAccept", "callContextToken", "mediaLegContextToken", "callConfigJson"}
    cfg = call_config(info)
    assert cfg["signalingEndpoint"] == "wss://rtc.lab/LilyRTC" and cfg["protocol"] == "LilyRTC/1.0/WSS"
    assert cfg["useWebSocketProvider"] is False
    (server,) = cfg["iceServers"]
    assert server["urls"] == ["turn:192.0.2.10:3478?transport=udp"] and ":" in server["username"]
    assert json.loads(info["callConfigJson"]) == cfg


def test_timeline_renders_for_humans():
    t = [0.0]
    tl = Timeline(clock=lambda: t[0])
    t[0] = 0.25
    tl.add("state", "InviteAnswerState", attempt=1)
    assert tl.render() == "    250.0 ms  state      InviteAnswerState attempt=1"
