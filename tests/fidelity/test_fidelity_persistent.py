"""The persistent peer connection, the emulated softphone against connect-rtc-js in Chromium
(issue 14; docs/persistent.md): every scenario in tests/fidelity/persistent/ keeps one peer
connection per engine for several calls, and the two must agree call by call (Talking, silent
audio), on the ICE states while idle or talking (``disconnected`` within the mid-call cut's
1.7 s: Chrome's ping phase), on ICE restarts (the library's decision) and on the health
check's tear-down when a call ends. Kept apart from test_fidelity.py: those faults place one
call per engine."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from support import require


pytestmark = pytest.mark.root


@pytest.fixture(autouse=True)
def _chromium() -> None:
    require("chromium")      # skips on a laptop without it; fails under CI, which installs it

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent / "persistent"
# half of Chrome's 5.0-8.4 s window (docs/fidelity.md, mid-call cut), plus the 0.25 s for
# timer-driven events: the emulation's own timer fires tens of ms late on a busy machine
DISCONNECTED_TOLERANCE = 1.7 + 0.25


def persistent_facts(doc: dict, key: str) -> dict:
    """What a persistent call did, on the scenario's clock."""
    obs = doc["observations"][key]
    tl = obs["timeline"]
    talking = next(e["t"] for e in doc["events"] if e["source"] == key and e["what"] == "TalkingState")
    offset = talking - obs["times"]["talking"]
    idle = [e["t"] + offset for e in tl if e["kind"] == "persistent" and e["name"] in ("idle", "idle-end")]
    return {
        "idle": (idle[0], idle[1]) if len(idle) >= 2 else None,
        "calls": [(e["call"], bool(e.get("silent_audio"))) for e in tl if e["kind"] == "quality" and "call" in e],
        "ice": [(e["name"], e["t"] + offset) for e in tl
                if e["kind"] == "ice" and e["name"] in ("disconnected", "failed") and e["t"] >= obs["times"]["talking"]],
        "restarts": sum(1 for e in tl if e["kind"] == "substate" and e["name"] == "IceRestartSubstate"),
        # the manager's health check when a call ends: the emulation's event, the library's log line
        "torn_down": any((e["kind"] == "info" and e["name"] == "health-check" and e.get("kept") is False)
                         or "unhealthy connection at call ends" in str(e.get("message", "")) for e in tl),
    }


def compare(emulated: dict, real: dict) -> list[str]:
    out = []
    for key in ("calls", "restarts", "torn_down"):
        if emulated[key] != real[key]:
            out.append(f"{key}: emulated {emulated[key]!r}, chromium {real[key]!r}")
    se, sr = emulated["ice"], real["ice"]
    if [s for s, _ in se] != [s for s, _ in sr]:
        out.append(f"ICE states: emulated {se}, chromium {sr}")
    elif any(abs(a - b) > DISCONNECTED_TOLERANCE for (_, a), (_, b) in zip(se, sr)):
        out.append(f"ICE state times: emulated {se}, chromium {sr}")
    return out


def test_compare_names_what_differs():
    same = {"calls": [(1, False), (2, True)], "ice": [("disconnected", 19.0)], "restarts": 0, "torn_down": True}
    assert compare(same, dict(same)) == []
    later = dict(same, ice=[("disconnected", 21.0)])
    assert compare(same, later) == [f"ICE state times: emulated {same['ice']}, chromium {later['ice']}"]
    assert compare(same, dict(same, calls=[(1, False), (2, False)]))[0].startswith("calls:")


RESTART = Path(__file__).resolve().parent / "restart"


@pytest.fixture(scope="module")
def verified(tmp_path_factory):
    """The persistent faults and the restart faults, verified in one run, three labs at once
    (one 90 s run instead of 61 s and 88 s one after the other): the verdict, and each fault
    folder's results."""
    out = tmp_path_factory.mktemp("persistent")
    r = subprocess.run([sys.executable, "-m", "lab.cli", "verify", str(HERE), str(RESTART), "--parallel", "3",
                        "-o", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=900)
    by_folder: dict[Path, list[Path]] = {HERE: [], RESTART: []}
    for result in sorted(out.glob("*/result.json")):
        by_folder[(ROOT / json.loads(result.read_text())["file"]).resolve().parent].append(result)
    return r, by_folder


def _verdicts_pass(r, results: list[Path]) -> None:
    failed = [p.parent.name for p in results if json.loads(p.read_text())["verdict"] != "pass"]
    assert not failed, f"{failed}: " + r.stdout[-4000:] + r.stderr[-2000:]


def test_persistent_faults_match(verified):
    r, by_folder = verified
    mismatches = {}
    results = by_folder[HERE]
    assert len(results) == len(list(HERE.glob("*.yaml"))), r.stdout[-4000:] + r.stderr[-2000:]
    for result in results:
        doc = json.loads(result.read_text())
        e = persistent_facts(doc, "call:emulated")
        c = persistent_facts(doc, "call:chromium")
        assert len(c["calls"]) >= 2, (result.parent.name, c)     # every call of the chain reported
        diff = compare(e, c)
        # a fault meant for the idle time must find both engines idle (Chromium starts 1-15 s
        # late on a loaded machine): else the run says nothing about the persistent connection
        fault = next((ev["t"] for ev in doc["events"] if ev["source"].startswith("conntrack:")), None)
        for name, facts in (("emulated", e), ("chromium", c)):
            if fault is not None and not (facts["idle"] and facts["idle"][0] <= fault <= facts["idle"][1]):
                diff.append(f"the fault at {fault:.1f} s came outside {name}'s idle time {facts['idle']}")
        if diff:
            mismatches[result.parent.name] = diff
    # first what differs (and whether the fault found both idle), then the expectations' verdicts
    assert not mismatches, mismatches
    _verdicts_pass(r, results)


# -- the ICE restart (tests/fidelity/restart/): a fault during a call on the persistent connection

#: ConnectedSubstate's 3 s timer, in both engines: the emulation's fires on a busy loop tens of
#: ms late, the library's setTimeout likewise (the issue's 0.25 s for timer-driven events)
RESTART_TIMER_TOLERANCE = 0.25


def restart_facts(doc: dict, key: str) -> dict:
    """What followed ICE ``disconnected`` during the call, on the scenario's clock: when it
    came, when the restart began (and after the disconnection), how it ended, ICE connected
    again, audio back, errors."""
    from lab.scenario.actions.call import midcall
    from lab.scenario.observations import CallObservation

    record = doc["observations"][key]
    obs = CallObservation.from_dict(record)
    talking = next(e["t"] for e in doc["events"] if e["source"] == key and e["what"] == "TalkingState")
    offset = talking - record["times"]["talking"]
    m = midcall(obs)
    cut = m["disconnected"]
    return {
        "disconnected": None if cut is None else cut + offset,
        "restart_after": m["restart"],
        "restart": None if m["restart"] is None else cut + offset + m["restart"],
        "outcome": m["outcome"],
        "ice_back": m["ice_back"] is not None,
        "audio_back": m["audio_back"] is not None,
        "audio_back_after": m["audio_back"],
        "errors": [e["name"] for e in record["timeline"] if e["kind"] == "error"],
    }


def compare_restart(emulated: dict, real: dict) -> list[str]:
    out = []
    for key in ("outcome", "ice_back", "audio_back", "errors"):
        if emulated[key] != real[key]:
            out.append(f"{key}: emulated {emulated[key]!r}, chromium {real[key]!r}")
    for name, f in (("emulated", emulated), ("chromium", real)):
        if f["restart_after"] is not None and abs(f["restart_after"] - 3.0) > RESTART_TIMER_TOLERANCE:
            out.append(f"{name}'s restart began {f['restart_after']:.2f} s after ICE disconnected, not 3 s")
    if emulated["restart"] is not None and real["restart"] is not None and \
            abs(emulated["restart"] - real["restart"]) > DISCONNECTED_TOLERANCE + RESTART_TIMER_TOLERANCE:
        out.append(f"restart times: emulated {emulated['restart']:.2f} s, chromium {real['restart']:.2f} s")
    return out


def test_compare_restart_names_what_differs():
    same = {"disconnected": 52.0, "restart_after": 3.0, "restart": 55.0, "outcome": "completed", "ice_back": True,
            "audio_back": True, "audio_back_after": 4.1, "errors": []}
    assert compare_restart(same, dict(same)) == []
    assert compare_restart(same, dict(same, outcome="failed"))[0].startswith("outcome:")
    late = dict(same, restart_after=3.6, restart=55.6)
    assert compare_restart(same, late) == ["chromium's restart began 3.60 s after ICE disconnected, not 3 s"]
    assert compare_restart(same, dict(same, disconnected=55.0, restart=58.0))[0].startswith("restart times")


def test_restart_faults_match(verified):
    r, by_folder = verified
    mismatches = {}
    results = by_folder[RESTART]
    assert len(results) == len(list(RESTART.glob("*.yaml"))), r.stdout[-4000:] + r.stderr[-2000:]
    for result in results:
        doc = json.loads(result.read_text())
        e, c = restart_facts(doc, "call:emulated"), restart_facts(doc, "call:chromium")
        diff = compare_restart(e, c)
        # the fault must find both engines talking, or the run says nothing about a restart
        fault = next((ev["t"] for ev in doc["events"] if ev["source"].startswith("conntrack:")), None)
        for name, facts in (("emulated", e), ("chromium", c)):
            if facts["disconnected"] is None:
                diff.append(f"{name}: ICE never went disconnected during the call (fault at {fault})")
        if diff:
            mismatches[result.parent.name] = diff
    assert not mismatches, mismatches
    _verdicts_pass(r, results)
