"""The emulated softphone against the real thing, fault by fault (issue 14): every scenario in
tests/fidelity/ places one call with each engine (``emulated`` and ``chromium``: Amazon's
connect-rtc-js in headless Chromium) and the two must agree on outcome, error name, error
time (within 0.25 s: timer-driven), the first relay candidate counted from the peer
connection's creation (within 50 ms plus one round trip to TURN) and audio both ways.
docs/fidelity.md has the matrix. Chromium is optional (`make setup` installs it).

The emulated calls open their microphone in 500 ms (``gum: 500ms``), as headless Chromium's
fake device does here (0.13-0.75 s): that is the candidate pool's head start on the ICE state
in the real browser, and with it both engines hand over a pooled candidate on a fast path."""

import json
import re
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
HERE = Path(__file__).resolve().parent
#: the agent's round trip to TURN in each scenario that changes it (s)
RTT = {"fidelity-turn-2s-one-way": 4.0, "fidelity-turn-500ms-one-way": 1.0}
ERROR_TOLERANCE = 0.25
#: Chrome turns "disconnected" 5.0-8.4 s after a cut, by the phase of its 2.5 s pings
#: (lab/agent/media.py ICE_DISCONNECTED_AFTER); the emulation takes the middle
# half of Chrome's 5.0-8.4 s window (docs/fidelity.md, mid-call cut), plus the 0.25 s for
# timer-driven events: the emulation's own timer fires tens of ms late on a busy machine
DISCONNECTED_TOLERANCE = 1.7 + 0.25


def ice_states(doc: dict, key: str) -> list[tuple[str, float]]:
    """A call's iceConnectionState changes after Talking, on the scenario's clock."""
    obs = doc["observations"][key]
    talking = next((e["t"] for e in doc["events"] if e["source"] == key and e["what"] == "TalkingState"), None)
    if talking is None or obs["times"].get("talking") is None:
        return []
    offset = talking - obs["times"]["talking"]
    return [(e["name"], e["t"] + offset) for e in obs["timeline"]
            if e["kind"] == "ice" and e["name"] in ("disconnected", "failed") and e["t"] >= obs["times"]["talking"]]


def failed_codes(obs: dict) -> list[int | None]:
    """The error codes that ended a TURN URL (None: it timed out or failed otherwise)."""
    out = []
    for e in obs["timeline"]:
        if e["kind"] == "ice" and e["name"] == "url_failed":
            code = e.get("code")
            if code is None:
                m = re.search(r"\b([3-6]\d\d)\b", str(e.get("reason", "")))
                code = int(m[1]) if m else None
            out.append(code)
    return out


def talked(obs: dict) -> float | None:
    """Seconds from TalkingState to DisconnectedState."""
    t = {e["name"]: e["t"] for e in obs["timeline"] if e["kind"] == "state"}
    if "TalkingState" not in t or "DisconnectedState" not in t:
        return None
    return t["DisconnectedState"] - t["TalkingState"]


def held(times: dict) -> bool:
    """The first relay candidate was ready before the ICE state (gathered by the pool during
    getUserMedia) and was handed over when it began."""
    return times.get("first_candidate") is not None and times["first_candidate"] < 0.05


def compare(name: str, emulated: dict, real: dict) -> list[str]:
    """What differs between the two engines' calls, in words (empty: they agree)."""
    out = []
    for key in ("reached_talking", "softphone_error"):
        if emulated.get(key) != real.get(key):
            out.append(f"{key}: emulated {emulated.get(key)!r}, chromium {real.get(key)!r}")
    te, tr = emulated["times"], real["times"]
    if te.get("error") is not None and tr.get("error") is not None:
        if te.get("error_state") != tr.get("error_state"):
            out.append(f"error state: emulated {te['error_state']}, chromium {tr['error_state']}")
        elif abs(te["error"] - tr["error"]) > ERROR_TOLERANCE:
            out.append(f"error time: emulated {te['error']:.3f} s, chromium {tr['error']:.3f} s")
    fe, fr = te.get("first_candidate_pc"), tr.get("first_candidate_pc")
    tol = 0.05 + RTT.get(name, 0.01)
    if (fe is None) != (fr is None):
        out.append(f"first relay candidate: emulated {fe}, chromium {fr}")
    elif fe is not None and held(te) and held(tr):
        # both allocated before the ICE state: the browser hands the pooled candidate over when
        # the local description is set, so only the ICE state's start can be compared
        if abs(te["first_candidate"] - tr["first_candidate"]) > tol:
            out.append(f"pooled candidate after the ICE state: emulated {te['first_candidate']:.3f} s, "
                       f"chromium {tr['first_candidate']:.3f} s")
    elif fe is not None and abs(fe - fr) > tol:
        out.append(f"first relay candidate after the peer connection: emulated {fe:.3f} s, chromium {fr:.3f} s")
    # why a TURN URL failed: the emulation's url_failed, Chrome's from its turn_port.cc log
    ce, cr = failed_codes(emulated), failed_codes(real)
    if ce != cr:
        out.append(f"TURN URL failures: emulated {ce}, chromium {cr}")
    if emulated.get("reached_talking") and real.get("reached_talking"):
        # hangup: DisconnectedState at once, not after the bye's answer (issue 14 item 3)
        he, hr = talked(emulated), talked(real)
        if he is None or hr is None or abs(he - hr) > ERROR_TOLERANCE:
            out.append(f"Talking to DisconnectedState: emulated {he} s, chromium {hr} s")
        qe, qr = emulated.get("quality") or {}, real.get("quality") or {}
        if qe.get("relay_transport") and qr.get("relay_protocol") and qe["relay_transport"] != qr["relay_protocol"]:
            out.append(f"relay transport: emulated {qe['relay_transport']}, chromium {qr['relay_protocol']}")
        se = bool((emulated.get("quality") or {}).get("silent_audio"))
        sr = bool((real.get("quality") or {}).get("silent_audio"))
        if se != sr:
            out.append(f"silent audio: emulated {se}, chromium {sr}")
    return out


#: faults run at once: each is its own lab, and most wait on timers, not the CPU
PARALLEL = 4


def pairs(out: Path) -> dict[str, tuple[dict, dict, dict]]:
    """Each fault's two calls, with the result document that holds the first: both from one
    lab, or from the two labs of a fault whose engines run apart (``NAME.emulated.yaml`` and
    ``NAME.chromium.yaml``: a rate-limited link would be shared, and two calls starve each
    other), which the scenario names tell by their ``-emulated`` / ``-chromium`` ending."""
    found: dict[str, dict] = {}
    alone: dict[str, dict[str, dict]] = {}
    for result in sorted(out.glob("*/result.json")):
        doc = json.loads(result.read_text())
        obs = doc["observations"]
        if "call:emulated" in obs and "call:chromium" in obs:
            found[result.parent.name] = doc
            continue
        for engine in ("emulated", "chromium"):
            if f"call:{engine}" in obs and result.parent.name.endswith(f"-{engine}"):
                alone.setdefault(result.parent.name[:-len(engine) - 1], {})[engine] = doc
    out_pairs = {name: (doc, doc["observations"]["call:emulated"], doc["observations"]["call:chromium"])
                 for name, doc in found.items()}
    for name, docs in alone.items():
        assert set(docs) == {"emulated", "chromium"}, f"{name}: only the {sorted(docs)} half ran"
        out_pairs[name] = ({"events": docs["emulated"]["events"] + docs["chromium"]["events"],
                            "observations": {"call:emulated": docs["emulated"]["observations"]["call:emulated"],
                                             "call:chromium": docs["chromium"]["observations"]["call:chromium"]}},
                           docs["emulated"]["observations"]["call:emulated"],
                           docs["chromium"]["observations"]["call:chromium"])
    return out_pairs


def mismatches_in(out: Path) -> tuple[dict[str, list[str]], dict[str, tuple[dict, dict, dict]]]:
    """Each fault's differences between the two engines (only faults that differ), and the pairs."""
    found = pairs(out)
    mismatches = {}
    for name, (doc, emulated, real) in sorted(found.items()):
        diff = compare(name, emulated, real)
        se, sr = ice_states(doc, "call:emulated"), ice_states(doc, "call:chromium")
        if [s for s, _ in se] != [s for s, _ in sr]:
            diff.append(f"ICE states after Talking: emulated {se}, chromium {sr}")
        elif any(abs(a - b) > DISCONNECTED_TOLERANCE for (_, a), (_, b) in zip(se, sr)):
            diff.append(f"ICE state times: emulated {se}, chromium {sr}")
        if diff:
            mismatches[name] = diff
    return mismatches, found


def _scenario_files(name: str) -> list[Path]:
    """The fault's scenario file(s): one, or its emulated and chromium halves."""
    stem = name.removeprefix("fidelity-")
    one = HERE / f"{stem}.yaml"
    return [one] if one.is_file() else sorted(HERE.glob(f"{stem}.*.yaml"))


def test_deterministic_faults_match(tmp_path):
    subprocess.run([sys.executable, "-m", "lab.cli", "verify", str(HERE), "--parallel", str(PARALLEL),
                    "-o", str(tmp_path)], cwd=ROOT, capture_output=True, text=True, timeout=900)
    mismatches, found = mismatches_in(tmp_path)
    faults = len(list(HERE.glob("*.yaml"))) - len(list(HERE.glob("*.chromium.yaml")))
    assert len(found) == faults, (sorted(found), faults)
    # a fault whose own expectations did not pass (a starved Chromium that reported no outcome)
    # is run again alone too, and must pass then
    for result in sorted(tmp_path.glob("*/result.json")):
        doc = json.loads(result.read_text())
        if doc["verdict"] != "pass":
            name = result.parent.name.removesuffix("-emulated").removesuffix("-chromium")
            why = [f"{c['title']}: {c['status']}: {c['observed'][:300]}" for c in doc["checks"] if c["status"] != "pass"]
            mismatches.setdefault(name, []).append(f"verdict {doc['verdict']} {doc.get('error') or ''} {why}")
    # Four labs start at once, Chromium in each: a headless Chrome starved of CPU then takes its
    # own steps late (a pool's Binding and Allocate 157 ms apart on a 1 ms path, TURN answering
    # in 0.2 ms), past the 50 ms + RTT. A fault that differs (or did not pass) is run
    # again alone, once, with the same tolerances: it must pass and match then, and both runs'
    # differences are shown if not.
    still = {}
    for name, diff in mismatches.items():
        files = _scenario_files(name)
        assert files, name
        again = tmp_path / "again" / name
        r = subprocess.run([sys.executable, "-m", "lab.cli", "verify", *map(str, files), "-o", str(again)],
                           cwd=ROOT, capture_output=True, text=True, timeout=300)
        alone, _ = mismatches_in(again)
        if r.returncode != 0 or alone:
            still[name] = {"with four labs": diff, "alone": alone.get(name) or r.stdout[-2000:]}
        else:
            print(f"{name}: differed with four labs at once ({'; '.join(diff)}), matched alone")
    assert not still, still


RUNS = 5


@pytest.mark.lossy          # deselected unless 'make fidelity' (tests/conftest.py)
def test_lossy_faults_outcomes_overlap(tmp_path):
    """Random faults (tests/fidelity/lossy/): each run 5 times; the two engines' outcomes
    (Talking with audio, silent, or the error's name) must have a common value, and loss
    within Talking must overlap (the ranges of the two engines' audio loss meet)."""
    for scenario in sorted((HERE / "lossy").glob("*.yaml")):
        outcomes: dict[str, list] = {"call:emulated": [], "call:chromium": []}
        losses: dict[str, list] = {"call:emulated": [], "call:chromium": []}
        for i in range(RUNS):
            out = tmp_path / f"{scenario.stem}-{i}"
            subprocess.run([sys.executable, "-m", "lab.cli", "run", str(scenario), "--name", f"lossy{i}",
                                "-o", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=300)
            doc = json.loads(next(out.glob("*/result.json")).read_text())
            for key in outcomes:
                obs = doc["observations"][key]
                q = obs.get("quality") or {}
                outcomes[key].append("talking" if obs.get("reached_talking") and not q.get("silent_audio")
                                     else obs.get("softphone_error") or "silent")
                if q.get("packets_received"):
                    losses[key].append(q.get("packets_lost", 0) / (q["packets_received"] + q.get("packets_lost", 0)))
        assert set(outcomes["call:emulated"]) & set(outcomes["call:chromium"]), (scenario.name, outcomes)
        le, lr = losses["call:emulated"], losses["call:chromium"]
        if le and lr:
            assert min(le) <= max(lr) and min(lr) <= max(le), (scenario.name, le, lr)
