"""Audio levels for the page's meters (lab/agent/levels.py): Chrome's audioLevel measure of
what the microphone gives the call and what is heard, as lines of the softphone's stream that
are never events of its timeline."""

from __future__ import annotations

import asyncio
import io
import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from lab.agent import levels
from lab.agent.timeline import Timeline
from lab.core.audio import SAMPLES, tone_samples, tone_track


def test_level_is_the_peak_over_full_scale():
    assert levels.level_of(np.array([], dtype=np.int16)) == 0.0
    assert levels.level_of(np.array([0, -32768, 100], dtype=np.int16)) == 1.0
    assert levels.level_of(tone_samples(600.0, 0, 4800, amplitude=0.3)) == pytest.approx(0.3, abs=0.001)
    assert levels.dbfs(0.0) is None
    assert levels.dbfs(0.1) == -20.0


def test_the_microphone_meter_counts_only_what_the_sender_pulled():
    track = tone_track(600.0)
    meter = levels.SourceMeter(track)
    assert meter.take() == 0.0                      # nothing pulled yet (no DTLS, no sending)
    samples = track.source(0, SAMPLES)              # what the sender's recv() asks for
    assert samples.shape == (SAMPLES,)
    assert meter.take() == pytest.approx(0.3, abs=0.01)
    assert meter.take() == 0.0                      # since the last reading only


def test_the_speaker_meter_reads_only_new_frames():
    sink = SimpleNamespace(frames=0, window=[])
    meter = levels.SinkMeter()
    assert meter.take(None) == 0.0                  # media not up yet
    assert meter.take(sink) == 0.0
    sink.window += [tone_samples(1000.0, 0, amplitude=0.5), tone_samples(1000.0, 0, amplitude=0.1)]
    sink.frames = 2
    assert meter.take(sink) == pytest.approx(0.5, abs=0.01)
    assert meter.take(sink) == 0.0                  # a stalled path reads silent, not the last second heard
    sink.window = sink.window[1:] + [tone_samples(1000.0, 0, amplitude=0.2)]
    sink.frames = 3
    assert meter.take(sink) == pytest.approx(0.2, abs=0.01)


def test_levels_are_stream_lines_not_timeline_events():
    out = io.StringIO()
    tl = Timeline(stream=out)
    tl.add("state", "TalkingState")
    tl.report("level", {"out": 0.3, "in": 0.0})
    lines = [json.loads(x) for x in out.getvalue().splitlines()]
    assert lines[1]["level"]["out"] == 0.3 and "t" in lines[1]["level"]
    assert [e.name for e in tl.events] == ["TalkingState"]
    Timeline().report("level", {"out": 1})          # no stream: nothing, no error


def test_report_every_interval_until_cancelled():
    async def run():
        track = tone_track(600.0)
        media = SimpleNamespace(track=track, sink=None)
        got = []
        task = asyncio.ensure_future(levels.report(media, got.append, 0.02))
        await asyncio.sleep(0.01)
        track.source(0, SAMPLES)
        media.sink = SimpleNamespace(frames=1, window=[tone_samples(1000.0, 0, amplitude=0.25)])
        await asyncio.sleep(0.1)
        task.cancel()
        return got
    got = asyncio.run(run())
    assert len(got) >= 3
    assert got[0]["out"] == pytest.approx(0.3, abs=0.01) and got[0]["in"] == pytest.approx(0.25, abs=0.01)
    assert got[0]["out_dbfs"] == pytest.approx(-10.5, abs=0.2)
    assert got[-1] == {"out": 0.0, "in": 0.0, "out_dbfs": None, "in_dbfs": None}


class FakeProc:
    """The softphone's process as serve reads it: JSON lines on stdout, then its exit."""

    def __init__(self, lines):
        self.stdout = [json.dumps(x).encode() + b"\n" for x in lines]
        self.stderr = io.BytesIO(b"")

    def wait(self):
        return 0


def test_a_call_s_levels_reach_the_page_but_not_its_timeline(tmp_path):
    from starlette.testclient import TestClient

    from lab.serve.app import create_app
    from lab.serve.live import LEVEL_S, LiveLab

    lines = [{"t": 0.1, "kind": "state", "name": "TalkingState"},
             {"level": {"t": 0.35, "out": 0.3, "in": 0.0, "out_dbfs": -10.5, "in_dbfs": None}},
             {"level": {"t": 0.6, "out": 0.3, "in": 0.25, "out_dbfs": -10.5, "in_dbfs": -12.0}},
             {"t": 1.2, "kind": "quality", "name": "summary"},
             {"outcome": {"ok": True, "state": "DisconnectedState", "reached_talking": True}}]
    asked = []

    def popen(argv, **kw):
        asked.append(json.loads(Path(argv[-1]).read_text()))
        return FakeProc(lines)

    network = SimpleNamespace(topo=SimpleNamespace(name="fake", nodes={}), state=SimpleNamespace(dir=tmp_path),
                              node=lambda name: SimpleNamespace(popen=popen))
    published = []
    live = LiveLab(network, published.append)
    live.calls[1] = {"id": 1, "agent": "agent1", "engine": "emulated", "events": [], "outcome": None, "started": 0.0}
    live._run_call(1, "agent1", "emulated", 1.0, tmp_path / "call.json")

    assert asked[0]["levels"] == LEVEL_S == 0.25            # the softphone is asked for them
    levels_seen = [e["level"] for e in published if e["type"] == "call-level"]
    assert [(l["out"], l["in"]) for l in levels_seen] == [(0.3, 0.0), (0.3, 0.25)]
    assert [e["name"] for e in live.calls[1]["events"]] == ["TalkingState", "summary"]     # not events
    assert [e["type"] for e in published] == ["call", "call-event", "call-level", "call-level", "call-event", "call-end"]
    with TestClient(create_app(live, "tok", tick=10)) as c:
        call = c.get("/api/calls", headers={"X-Icelab-Token": "tok"}).json()[0]
    assert call["level"]["in_dbfs"] == -12.0 and call["outcome"]["ok"]
