"""The services and the agent as processes (JSON config, JSON-lines output), on loopback."""

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

from coturn import coturn

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}


def start(module, config):
    p = subprocess.Popen([sys.executable, "-m", module, "--config", str(config)], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, env=ENV, cwd=ROOT)
    for _ in range(20):  # the service logs a few lines (listening...) before it is ready
        line = p.stdout.readline()
        if not line:
            break
        ready = json.loads(line)
        if ready.get("event") == "ready":
            # keep reading its log so that a full pipe never blocks the service
            threading.Thread(target=p.stdout.read, daemon=True).start()
            return p, ready
    p.kill()
    raise AssertionError(f"{module} did not get ready: {p.stderr.read()}")


def stop(p):
    p.terminate()
    p.wait(10)
    p.stderr.close()


def agent(config):
    r = subprocess.run([sys.executable, "-m", "lab.agent", "--config", str(config)], capture_output=True,
                       text=True, env=ENV, cwd=ROOT, timeout=60)
    lines = [json.loads(x) for x in r.stdout.splitlines()]
    return r.returncode, lines, r.stderr


def test_cloud_and_agent_processes(tmp_path):
    with coturn() as turn:
        cloud_cfg = tmp_path / "cloud.json"
        cloud_cfg.write_text(json.dumps({
            "turn_secret": turn.secret, "agent_turn_urls": [turn.url("udp")], "ca_dir": str(tmp_path / "ca"),
            "port": 0, "media_info_dir": str(tmp_path / "calls"),
            "calls": {"c1": {}, "busy": {"behaviour": "busy"}}}))
        cloud, ready = start("lab.services.media", cloud_cfg)
        try:
            (tmp_path / "agent.json").write_text(json.dumps(
                {"call": "calls/c1.json", "ca": ready["ca"], "talk_time": 1.5}))
            rc, lines, err = agent(tmp_path / "agent.json")
            assert rc == 0, (lines, err)
            outcome = lines[-1]["outcome"]
            assert outcome["ok"] and outcome["quality"]["packets_received"] > 0
            states = [x["name"] for x in lines[:-1] if x["kind"] == "state"]
            assert states[-2:] == ["TalkingState", "DisconnectedState"]

            (tmp_path / "busy.json").write_text(json.dumps({"call": "calls/busy.json", "ca": ready["ca"]}))
            rc, lines, _ = agent(tmp_path / "busy.json")
            assert rc == 1 and lines[-1]["outcome"]["softphone_error"] == "user_busy_error"
            r = subprocess.run([sys.executable, "-m", "lab.agent", "--config", str(tmp_path / "busy.json"), "--text"],
                               capture_output=True, text=True, env=ENV, cwd=ROOT, timeout=60)
            assert r.returncode == 1 and "state      InviteAnswerState" in r.stdout
            assert r.stdout.rstrip().endswith("outcome: FailedState (user_busy_error)")
        finally:
            stop(cloud)


def test_signalling_process_and_bad_configs(tmp_path):
    cfg = tmp_path / "sig.json"
    cfg.write_text(json.dumps({"ca_dir": str(tmp_path / "ca"), "port": 0,
                               "calls": {"c1": {"contact_ctx": "tok", "answer_delay": 0.1}}}))
    sig, ready = start("lab.services.signalling", cfg)
    try:
        info = {"callType": "audio_only", "autoAccept": False, "callContextToken": "tok",
                "mediaLegContextToken": "x", "callConfigJson": json.dumps({
                    "iceServers": [], "signalingEndpoint": ready["endpoint"], "protocol": "LilyRTC/1.0/WSS",
                    "useWebSocketProvider": False})}
        # no TURN URL at all: end-of-candidates at once with none
        (tmp_path / "a.json").write_text(json.dumps({"callId": "c1", "mediaInfo": info, "ca": ready["ca"],
                                                     "media": False, "talk_time": 0.1}))
        rc, lines, _ = agent(tmp_path / "a.json")
        assert rc == 1 and lines[-1]["outcome"]["rtc_error"] == "ICE_COLLECTION_TIMEOUT"
    finally:
        stop(sig)

    (tmp_path / "bad.json").write_text(json.dumps({"callId": "c1", "mediaInfo": {}, "profile": "firefox"}))
    rc, _, err = agent(tmp_path / "bad.json")
    assert rc == 2 and "bad.json: profile: must be one of chrome, aiortc-default" in err
    (tmp_path / "bad2.json").write_text(json.dumps({"call": "nope.json"}))
    rc, _, err = agent(tmp_path / "bad2.json")
    assert rc == 2 and "call: cannot read" in err and "hint" in err


def test_the_chromium_engine_without_chromium_says_how_to_get_it(tmp_path):
    """docs/browser.md: without Chromium, `engine: chromium` exits 2 with the package to install."""
    from lab.services.mediainfo import media_info
    info = media_info(turn_urls=["turn:192.0.2.1:3478?transport=udp"], turn_secret="s",
                      signalling_endpoint="wss://192.0.2.2/LilyRTC")
    cfg = tmp_path / "agent.json"
    cfg.write_text(json.dumps({"callId": "c1", "mediaInfo": info, "engine": "chromium"}))
    r = subprocess.run([sys.executable, "-m", "lab.agent", "--config", str(cfg)], capture_output=True, text=True,
                       env=dict(os.environ, PATH=str(tmp_path)), timeout=60)
    assert r.returncode == 2, r.stderr
    assert "Chromium is not installed" in r.stderr and "sudo make setup" in r.stderr
