"""Expectations evaluated from what a run observed.

Each check is ``pass``, ``fail`` or ``error``. ``error`` means the check could not be
evaluated (the probe never ran, its process failed, the data it needs is missing): it is
never counted as a pass, and it makes the whole scenario's verdict ``error``.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass

from lab.core.units import format_duration

from .load import Expectation, Scenario

SILENCE_DBFS = -40.0   # as the agent (lab/agent/peer.py): below this the audio counts as silence


@dataclass
class Check:
    title: str
    status: str                  # pass, fail, error
    observed: str                # what was seen, in words
    meaning: str | None          # the scenario's pass or fail text for people
    line: int | None = None
    about: str = ""              # "probe:NAME": the observation it was evaluated from

    def to_dict(self) -> dict:
        return {"title": self.title, "about": self.about, "status": self.status, "observed": self.observed,
                "meaning": self.meaning, "line": self.line}


def evaluate(scenario: Scenario, observations: dict[str, dict]) -> list[Check]:
    checks = []
    for e in scenario.expectations:
        c = _one(e, observations)
        c.about = f"{e.kind}:{e.target}"
        checks.append(c)
    return checks


def _one(e: Expectation, observations: dict[str, dict]) -> Check:
    # a NAT's counters are read with the firewalls' (runner._firewall_counters)
    obs = observations.get(f"{'firewall' if e.kind == 'nat' else e.kind}:{e.target}")
    if obs is None:
        return Check(e.title, "error", f"the {e.kind} '{e.target}' produced nothing to check", None, e.line)
    if "error" in obs:
        return Check(e.title, "error", obs["error"], None, e.line)
    if e.kind == "probe":
        ok, observed = _probe(e, obs)
    elif e.kind == "call":
        ok, observed = _call(e, obs)
    elif e.kind == "nat":
        ok, observed = _nat(e, obs)
    else:       # pragma: no cover - load.py refuses kinds that have no evaluator
        return Check(e.title, "error", f"no evaluator for '{e.kind}' expectations", None, e.line)
    if ok is None:
        return Check(e.title, "error", observed, None, e.line)
    return Check(e.title, "pass" if ok else "fail", observed, e.spec.pass_ if ok else e.spec.fail, e.line)


def _probe(e: Expectation, obs: dict) -> tuple[bool | None, str]:
    spec = e.spec
    sent, arrived, back = obs["sent"], obs["requests_received"], obs["replies"]
    if arrived is None and (spec.request_reached is not None or spec.reply_reached is not None):
        return None, (f"{sent} sent, {back} replies back; whether requests arrived at {obs['to_node']} is unknown "
                      f"({obs.get('answered_by', 'a service')} answers there and there is no capture to count them)")
    words = f"{sent} sent, {'?' if arrived is None else arrived} arrived at {obs['to_node']}, {back} replies back"
    if obs.get("errors"):
        words += f" (sender: {obs['errors'][0]})"
    if back < sent and obs.get("requests_where"):
        words += f"; {obs['requests_where']}"
        if arrived and obs.get("replies_where"):
            words += f"; {obs['replies_where']}"
    ok = True
    if spec.reached is not None:
        ok &= (back > 0) == spec.reached
    if spec.request_reached is not None:
        ok &= (arrived > 0) == spec.request_reached
    if spec.reply_reached is not None:
        if arrived == 0:
            return None, words + ": no request arrived, so the reply path was not tested"
        ok &= (back > 0) == spec.reply_reached
    if "rtt" in e.bounds:
        if not obs["rtt_ms"]:
            return (False, words + ": no reply, so no round-trip time")
        median = statistics.median(obs["rtt_ms"]) / 1000
        words += f", median RTT {format_duration(median)}"
        ok &= e.bounds["rtt"].holds(median)
    return bool(ok), words


def _call(e: Expectation, obs: dict) -> tuple[bool | None, str]:
    spec = e.spec
    q = obs.get("quality") or {}
    silent = bool(q.get("silent_audio"))
    if obs.get("reached_talking"):
        words = "reached Talking" + (" but the audio was silent" if silent else
                                     f", audio both ways ({q.get('packets_sent')} sent, {q.get('packets_received')} received)")
    else:
        words = f"failed with {obs.get('softphone_error') or obs.get('rtc_error') or 'no error'}"
    times = obs.get("times") or {}
    if times.get("error") is not None:
        state = times.get("error_state")
        if times.get("error_from") == "call":
            since = "the call began"
        else:
            since = ("the ICE state" if state in (None, "ConnectSignalingAndIceCollectionState") else state) + " began"
        words += f" {format_duration(times['error'])} after {since}"
    if obs.get("diagnosis"):
        words += f": {obs['diagnosis']}"
    if times.get("first_candidate") is not None:
        words += f"; first relay candidate after {format_duration(times['first_candidate'])}"
    far = obs.get("far_end")
    if far is not None and obs.get("reached_talking"):
        words += (f"; the caller leg received {far.get('packets_received')}"
                  + (f" ({far.get('heard_hz')} Hz)" if far.get("packets_received") else ""))
    if q.get("relay_transport"):
        words += f"; audio relayed over {q['relay_transport'].upper()} to TURN"
    ok = True
    if spec.outcome is not None:
        got = ("silent" if silent else "talking") if obs.get("reached_talking") else "failed"
        ok &= got == spec.outcome
    if spec.error is not None:
        ok &= obs.get("softphone_error") == spec.error
    if spec.audio is not None:
        agent_heard = bool(obs.get("reached_talking")) and not silent
        if spec.audio and agent_heard and far is None:
            return None, words + "; what the caller leg heard is unknown (the media edge logged no hangup)"
        far_heard = bool(far) and bool(far.get("packets_received")) and (far.get("heard_dbfs") or -999) > SILENCE_DBFS
        ok &= (agent_heard and far_heard) == spec.audio
    if spec.candidates is not None:
        words += f"; {obs.get('local_candidates')} relay candidate(s)"
        ok &= obs.get("local_candidates") == spec.candidates
    if spec.relay_transport is not None:
        if not q.get("relay_transport"):
            return False, words + "; no relay carried audio"
        ok &= q["relay_transport"] == spec.relay_transport
    if spec.max_lost is not None:
        if not obs.get("reached_talking") or far is None:
            return False, words + "; no audio to count losses in"
        lost = (q.get("packets_lost") or 0, far.get("packets_lost") or 0)
        words += f"; lost {lost[0]} to the agent, {lost[1]} to the caller"
        ok &= max(lost) <= spec.max_lost
    for key, label in (("error_at", "error"), ("first_candidate", "first_candidate")):
        if key in e.bounds:
            value = times.get(label)
            if value is None:
                return False, words + f"; no {label.replace('_', ' ')} to time"
            ok &= e.bounds[key].holds(value)
    if spec.sent_candidates is not None:
        good, more = _candidates(spec.sent_candidates, obs)
        words += more
        ok &= good
    if spec.mdns is not None:
        hosts = [e["candidate"].split()[4] for e in obs.get("timeline") or []
                 if e.get("kind") == "candidate" and e.get("name") == "host"]
        named = [h for h in hosts if h.endswith(".local")]
        words += f"; host candidates {'named by mDNS' if hosts and len(named) == len(hosts) else 'with addresses' if hosts and not named else 'mixed' if hosts else 'none'}"
        ok &= bool(hosts) and (len(named) == len(hosts) if spec.mdns else not named)
    quality = _quality(e, obs, q)
    if quality is not None:
        good, more = quality
        words += more
        if good is None:
            return None, words
        ok &= good
    if obs.get("vdi"):
        words += vdi_words(obs["vdi"])
    if "setup" in e.bounds:
        t = times.get("talking")
        start = (obs.get("timeline") or [{}])[0].get("t", 0.0)
        if t is None:
            return False, words + "; never reached Talking, so no set-up time"
        setup = t - start
        words += f"; Talking after {format_duration(setup)}"
        ok &= e.bounds["setup"].holds(setup)
    return bool(ok), words


def _nat(e: Expectation, obs: dict) -> tuple[bool | None, str]:
    """Mappings a NAT created: its masquerade/SNAT rules see only the first packet of each
    connection, so their packet counters count mappings (lab/net/nat.py)."""
    rules = [r for r in obs.get("rules", []) if r.get("action") in ("masquerade", "snat")]
    if not rules:
        return None, f"{e.target} has no masquerade or SNAT rule to count mappings with"
    n = sum(r["packets"] for r in rules)
    ok = e.bounds["mappings"].holds(n) if "mappings" in e.bounds else True
    return ok, f"{e.target} created {n} mapping{'s' if n != 1 else ''}"


def _candidates(allowed: list[str], obs: dict) -> tuple[bool, str]:
    """What the invite carried (the candidates gathered before collection ended) against
    the types allowed; host candidates kept inside the agent are named as evidence."""
    import re
    tl = obs.get("timeline") or []
    sent = [e["candidate"] for e in tl if e.get("kind") == "candidate" and e.get("name") == "relay"]
    kept = [e["candidate"] for e in tl if e.get("kind") == "candidate" and e.get("name") == "host"]
    types = [m.group(1) if (m := re.search(r" typ (\w+)", c)) else "?" for c in sent]
    words = f"; the invite carried {len(sent)} candidate{'s' if len(sent) != 1 else ''}"
    if sent:
        words += " (" + ", ".join(f"{t} {c.split()[4]}" for t, c in zip(types, sent)) + ")"
    if kept:
        words += f"; {len(kept)} host candidate{'s' if len(kept) != 1 else ''} kept in the agent (" + \
                 ", ".join(c.split()[4] for c in kept) + ")"
    return bool(sent) and all(t in allowed for t in types), words


def audio_loss(q: dict) -> float | None:
    """The worse direction's loss ratio: the agent's receiver counts what it lost of the
    caller's audio; the far end's RTCP receiver reports what it lost of the agent's."""
    ratios = []
    if q.get("packets_received") is not None and q.get("packets_lost") is not None:
        total = q["packets_received"] + max(0, q["packets_lost"])
        if total:
            ratios.append(max(0, q["packets_lost"]) / total)
    if q.get("remote_packets_lost") is not None and q.get("packets_sent"):
        ratios.append(max(0, q["remote_packets_lost"]) / q["packets_sent"])
    return max(ratios) if ratios else None


def _quality(e: Expectation, obs: dict, q: dict) -> tuple[bool | None, str] | None:
    """Audio quality bounds: measured once Talking, from the softphone's RTP/RTCP statistics."""
    keys = [k for k in ("loss", "jitter", "jitter_max", "rtt") if k in e.bounds]
    if not keys:
        return None
    if not obs.get("reached_talking"):
        return False, "; never reached Talking, so no audio to measure"
    ok, words = True, ""
    for key in keys:
        if key == "loss":
            value, shown = audio_loss(q), None
            shown = None if value is None else f"{value * 100:.1f} %"
        else:
            ms = q.get(f"{key}_ms")
            value = None if ms is None else ms / 1000
            shown = None if value is None else format_duration(value)
        if value is None:
            why = ("no RTCP receiver report came back during the call: talk longer"
                   if key == "rtt" else "the softphone reported no audio statistics")
            return None, words + f"; audio {key} could not be measured ({why})"
        words += f"; audio {key.replace('_', ' ')} {shown}"
        ok &= e.bounds[key].holds(value)
    return ok, words


def vdi_words(v: dict) -> str:
    """A VDI call's mode and the mouth-to-ear estimate of both places the engine can run."""
    words = f"; VDI {v['mode']} (softphone on {v['engine_on']})"
    m = v.get("mouth_to_ear") or {}
    if "error" in m:
        return words + f"; mouth-to-ear not estimated: {m['error']}"
    if m:
        words += (f"; mouth-to-ear about {m['in-desktop']['total_ms']:.0f} ms with the softphone in the desktop "
                  f"(display channel {m['in-desktop']['display_ms']:.1f} ms), "
                  f"{m['redirected']['total_ms']:.0f} ms redirected")
    return words
