"""``call``: a softphone call from an agent host, and what it is expected to do.

The softphone (``python -m lab.agent``) is started while the lab's services start and waits;
at the step's time it is told to place the call. Its JSON lines are read as they come, so
that its events land on the scenario's clock.
"""

from __future__ import annotations

import json
import re
import sys
from typing import Literal

from pydantic import Field

from lab.core.units import Bound, format_duration, parse_duration
from lab.net.vdi import call_observation

from ..diagnose import path_points
from ..observations import CallObservation, Quality
from .agentproc import AgentProcess
from .base import Action, DurationText, Expect, ExpectModel, Strict, action, expect, typed
from .load import CallsExpectation, LoadRun, check_load, load_calls
from .softphone import ICE_STATE, SILENCE_DBFS, SOFTPHONE_ERRORS

MAX_LOAD_CALLS = 1000  # one machine verifies about 200-300 at once (docs/scale.md)


class Persistent(Strict):
    """The CCP's persistent peer connection (lab/agent/persistent.py, docs/persistent.md): the
    peer connection and its TURN allocation set up before the first call and kept between
    calls, each call put on it with connectContact."""

    calls: int = Field(2, ge=1, le=10, description="how many calls, one after the other, on the kept connection")
    idle: DurationText = Field("20s", description="the idle time between two calls (the call's talk time apart)")


class Call(Strict):
    """Place a softphone call from an agent host: the emulated softphone (lab/agent) against
    the lab's signalling mock, media edge and TURN (docs/softphone.md)."""

    name: str | None = Field(None, description="what expectations call it (default: the agent's name)")
    from_: str = Field(alias="from", description=(
        "the agent host that calls; with 'count': a group of the topology ('groups:'), a lan (its agent "
        "hosts) or one agent host, whose members place the calls, one each, in their order"))
    count: int | None = Field(None, ge=1, le=MAX_LOAD_CALLS, description=(
        "a load run: place this many calls from the members of 'from', one per member, in one "
        "softphone process (lab/agent/load.py); expectations count their outcomes ('calls:')"))
    over: DurationText = Field("0s", description=(
        "with 'count': the calls' starts spread evenly over this window ('20s': one every 100 ms for 200)"))
    media: Literal["full", "light"] | None = Field(None, description=(
        "full: the agent's audio encoded and decoded with Opus (every single call's default); light: "
        "pre-encoded Opus frames, the far end's verified by payload and sequence instead of decoded, "
        "ICE, DTLS and SRTP as real (a load run's default: about a third of the cost per call, docs/scale.md)"))
    talk: DurationText = Field("3s", description="how long to stay in Talking before hanging up")
    profile: Literal["chrome", "aiortc-default"] = Field("chrome", description="the ICE behaviour to emulate")
    engine: Literal["emulated", "chromium"] = Field("emulated", description=(
        "emulated: the lab's softphone; chromium: the real connect-rtc-js in headless Chromium (optional package)"))
    answer: Literal["answer", "busy", "not_found", "silent"] = Field(
        "answer", description="how the cloud answers the invite (silent: never)")
    answer_delay: DurationText = Field("0s", description="how long the cloud waits before answering the invite")
    wrong_token: bool = Field(False, description="hand the agent a contact token the cloud does not expect (403)")
    vdi: Literal["in-desktop", "redirected", "redirect-unavailable"] | None = Field(None, description=(
        "from a thin client (a host with 'vdi:'): in-desktop, the softphone runs in the virtual desktop; "
        "redirected, its RTC engine runs on the thin client and signalling stays in the desktop; "
        "redirect-unavailable, the plug-in is not ready in 10 s (vdi_redir_not_supported). "
        "Without it the softphone runs on the host itself (docs/vdi.md)"))
    mdns: bool = Field(False, description="the browser names host candidates <uuid>.local (mDNS obfuscation)")
    gum: DurationText = Field("0s", description=(
        "how long the emulated microphone takes to open (getUserMedia) in GrabLocalMediaState; the "
        "candidate pool gathers meanwhile. Headless Chromium's fake device takes 0.13-0.75 s here "
        "(docs/fidelity.md); the emulated engine only"))
    persistent: Persistent | None = Field(None, description=(
        "place several calls on one persistent peer connection, idle in between; the outcome, audio "
        "and quality are the last call's (every call's are in the timeline)"))


class CallStep(Call):
    """A checked call: its times in seconds."""

    talk: float
    answer_delay: float
    gum: float
    over: float = 0.0                     # seconds; 0: a single call, or all at once
    persistent_idle: float = 0.0


class CallExpect(ExpectModel):
    call: str = Field(description="the call's name")
    outcome: Literal["talking", "failed", "silent"] | None = None
    error: str | None = Field(None, description="the softphone error type, e.g. ice_collection_timeout")
    error_at: str | None = Field(None, description=(
        "when the error comes, after the state it failed in began (when its timer started: the ICE state for "
        "ice_collection_timeout and signalling_connection_failure, InviteAnswerState for "
        "signalling_handshake_failure; the call's start for an error before any state, such as the VDI "
        "plug-in's): '8s +/- 0.2s'"))
    first_candidate: str | None = Field(None, description="bound on the first relay candidate after the ICE state begins: '< 300ms'")
    setup: str | None = Field(None, description="bound on the time from the call's start to Talking")
    audio: bool | None = Field(None, description=(
        "audio flowed both ways (true: the agent heard the caller and the caller leg heard the agent) or not (false)"))
    candidates: int | None = Field(None, ge=0, description="relay candidates the softphone had when ICE collection ended")
    relay_transport: Literal["udp", "tcp", "tls"] | None = Field(
        None, description="how the agent reached the TURN relay that carried the call's audio")
    max_lost: int | None = Field(None, ge=0, description="audio packets lost at most, in each direction")
    loss: str | None = Field(None, description=(
        "bound on audio packet loss once Talking, the worse of the two directions: '< 1%'"))
    jitter: str | None = Field(None, description="bound on the agent's received audio jitter (RFC 3550): '< 30ms'")
    jitter_max: str | None = Field(None, description=(
        "bound on the worst of that jitter sampled every 100 ms while talking (the RFC 3550 estimate "
        "forgets a burst within about a second): '>= 5ms'"))
    rtt: str | None = Field(None, description="bound on the media round-trip time from RTCP: '< 300ms'")
    sent_candidates: list[Literal["host", "srflx", "prflx", "relay"]] | None = Field(None, description=(
        "the only candidate types the invite may carry, e.g. [relay]: it carried at least one, none of another type"))
    mdns: bool | None = Field(None, description=(
        "the agent's host candidates were named <uuid>.local (true) or kept their addresses (false)"))
    ice_restart: Literal["completed", "failed", "none"] | None = Field(None, description=(
        "what the softphone's ICE restart did after ICE went disconnected during the call (connect-rtc-js "
        "IceRestartSubstate, docs/persistent.md): completed (the restart's answer was applied), failed (back to "
        "ConnectedSubstate without one), none (no restart began)"))
    restart_at: str | None = Field(None, description=(
        "bound on when the ICE restart began after ICE went disconnected during the call: '3s +/- 0.5s'"))
    ice_back: bool | None = Field(None, description=(
        "ICE was connected again after it went disconnected during the call (true) or stayed disconnected (false)"))
    audio_back: str | None = Field(None, description=(
        "bound on when audio arrived again after ICE went disconnected during the call (the ICE restart's "
        "audio-back): '< 8s'"))


def engine_node(topo, spec) -> str:
    """Where a call's softphone runs: the host itself, or under VDI without redirection the
    thin client's virtual desktop (docs/vdi.md)."""
    if spec.vdi in ("in-desktop", "redirect-unavailable"):
        return topo.nodes[spec.from_].vdi.desktop
    return spec.from_


def turn_host(topo) -> str | None:
    return next((n.name for n in topo.nodes.values() if "turn" in n.services), None)


@action
class CallAction(Action):
    name = "call"
    model = Call
    named = True

    @classmethod
    def check(cls, ck, step, topo) -> bool:
        spec, path = step.spec, step.path
        step.name = spec.name or spec.from_
        load = spec.count is not None
        ok = check_load(ck, step, topo) if load else ck.host(topo, spec.from_, path + ("from",), agent=True)
        if not load:
            for key in ("over", "media"):
                if key in spec.model_fields_set and (key != "media" or spec.media == "light"):
                    ck.err(path + (key,), f"'{key}' is for a load run (a call step with 'count')",
                           "add 'count: N' (and 'from:' a group or a lan), or leave it out")
                    ok = False
        times = {}
        for key in ("talk", "answer_delay", "gum", "over"):
            times[key], m, h = parse_duration(getattr(spec, key))
            if m:
                ck.err(path + (key,), m, h)
                ok = False
        if spec.persistent is not None:
            times["persistent_idle"], m, h = parse_duration(spec.persistent.idle)
            if m:
                ck.err(path + ("persistent", "idle"), m, h)
                ok = False
            if spec.vdi is not None:
                ck.err(path + ("persistent",), "a persistent peer connection is not emulated under VDI",
                       "leave 'vdi' or 'persistent' out")
                ok = False
        if ok and spec.vdi is not None and topo.nodes[spec.from_].vdi is None:
            ck.err(path + ("vdi",), f"'{spec.from_}' is not a thin client, so it has no VDI mode",
                   "give the host 'vdi: {desktop: NAME}' in the topology, or leave 'vdi' out")
            ok = False
        if not any("signalling" in n.services for n in topo.nodes.values()):
            ck.err(path, "a call needs a host with the signalling service (and one with turn)",
                   "add 'services: [signalling]' to a server host in the cloud")
            ok = False
        if ok:
            step.spec = typed(CallStep, spec, **times)
        return ok

    @classmethod
    def plan(cls, topo, steps: list) -> None:
        """The calls registered with the cloud: the signalling mock answers each as the step says."""
        plans = topo.services.setdefault("signalling", {}).setdefault("calls", {})
        for st in steps:
            plan = {"behaviour": st.spec.answer, "answer_delay": st.spec.answer_delay}
            if st.spec.wrong_token:
                plan["contact_ctx"] = "not-the-token-the-cloud-expects"
            if st.spec.count is None:
                plans[st.name] = plan
                continue
            for call_id, _ in load_calls(topo, st):
                plans[call_id] = dict(plan, media=st.spec.media or "light")

    @classmethod
    def before_services(cls, run, network, steps: list) -> None:
        """Each call's softphone process, started while the services start (it waits)."""
        for step in steps:
            run.warm[step.name] = (LoadRun if step.spec.count is not None else CallRun)(run, step, network)

    @classmethod
    def capture_path(cls, topo, step) -> list | None:
        turn = turn_host(topo)
        if turn is None or step.spec.count is not None:   # a load run's hundreds of calls are counted, not traced
            return None
        return path_points(topo, engine_node(topo, step.spec), topo.address_of(turn))

    @classmethod
    def start(cls, run, step) -> "CallRun | LoadRun":
        made = LoadRun if step.spec.count is not None else CallRun
        return (run.warm.pop(step.name, None) or made(run, step)).go()


class CallRun(AgentProcess):
    """A softphone call in flight: ``python -m lab.agent`` in the agent's namespace."""

    MAX_S = 90.0

    def __init__(self, run, step, network=None):
        """Start the softphone process; it imports what it needs (about 0.6 s of Python and
        aiortc) and waits: ``go()`` at the step's time places the call. The runner starts
        it while the lab's services start (Network.before_services)."""
        spec = step.spec
        self.step = step
        self.key = f"call:{step.name}"
        network = network or run.network
        d = network.state.dir
        cfg = d / f"agent-{step.name}.json"
        agent_cfg = {"call": str(d / "calls" / f"{step.name}.json"), "ca": str(d / "pki" / "ca.pem"),
                     "talk_time": spec.talk, "profile": spec.profile, "engine": spec.engine,
                     "mdns": spec.mdns, "gum_time": spec.gum}
        self.runs_on = engine_node(run.scenario.topology, spec)      # where the softphone runs
        if spec.vdi is not None:
            client = run.scenario.topology.nodes[spec.from_].vdi
            agent_cfg["vdi"] = {"mode": spec.vdi, "desktop": str(client.address), "port": client.port}
        self.max_s = self.MAX_S
        if spec.persistent is not None:
            agent_cfg["persistent"] = {"calls": spec.persistent.calls, "idle": spec.persistent_idle}
            self.max_s += spec.persistent.calls * spec.talk + (spec.persistent.calls - 1) * spec.persistent_idle
        cfg.write_text(json.dumps(agent_cfg))
        self.run = run
        self.spawn(network.node(self.runs_on), [sys.executable, "-m", "lab.agent", "--wait", "--config", str(cfg)],
                   self.max_s)

    def finish(self, run) -> None:
        self.end()
        outcome = next((item["outcome"] for _, item in self.lines if "outcome" in item), None)
        if outcome is None:
            run.result.observations[self.key] = {
                "error": f"the softphone did not report an outcome: {self.stderr.decode(errors='replace')[-400:]}"}
            return
        events = [(t, e) for t, e in self.lines if "kind" in e]
        obs = dict(outcome, timeline=[e for _, e in events])
        obs["times"] = _times([e for _, e in events])
        if outcome.get("reached_talking"):
            obs["far_end"] = run.far_end(self.step.name)
        if self.step.spec.vdi is not None:
            obs["vdi"] = call_observation(run.network, self.step.spec.from_, self.step.spec.vdi, self.runs_on)
        run.result.observations[self.key] = obs
        if self.lines:      # from 'go' to the softphone's first event: lab overhead, not the call's
            run.result.timings[f"agent_start.{self.step.name}"] = self.lines[0][0] - self.started
        for t, e in events:
            if e["kind"] in ("state", "error") or (e["kind"] == "candidate" and e["name"] == "relay"):
                what = e["name"] if e["kind"] != "error" else f"{e['name']} ({e.get('softphone_error')})"
                run.add_event(t, self.key, what)
        verdict = "talking" if outcome.get("reached_talking") else (outcome.get("softphone_error") or "failed")
        run.event(self.key, f"ended: {outcome['state']}, {verdict}")


def _times(events: list[dict]) -> dict:
    """A call's times from the softphone's events (its own clock)."""
    ice = next((e["t"] for e in events if e["kind"] == "state" and e["name"] == ICE_STATE), None)
    first = next((e["t"] for e in events if e["kind"] == "candidate" and e["name"] == "relay"), None)
    err = next((e for e in events if e["kind"] == "error"), None)
    talking = next((e["t"] for e in events if e["kind"] == "state" and e["name"] == "TalkingState"), None)
    # both engines log "peer-connection" when RTCSession.connect() creates it (the candidate
    # pool starts gathering then): the origin that measures the network, not the pool
    pc = next((e["t"] for e in events if e["kind"] == "info" and e["name"] == "peer-connection"), None)
    # an error is timed from the start of the state it failed in: that is when the softphone's
    # timer for it started (ICE and connect timers: the ICE state; the invite timer:
    # InviteAnswerState); an error before any state (the VDI plug-in's) from the call's start
    failed_in = err and next((e["t"] for e in events if e["kind"] == "state" and e["name"] == err.get("state")),
                             None)
    start = events[0]["t"] if events else 0.0
    since = failed_in if failed_in is not None else (start if err is not None and ice is None else None)
    return {"ice_start": ice, "first_candidate": None if first is None or ice is None else first - ice,
            "error": None if err is None or since is None else err["t"] - since,
            "error_state": err and (err.get("state") if failed_in is not None else None),
            "error_from": "call" if err is not None and failed_in is None else "state",
            "talking": talking, "call_start": start if events else None, "pc_created": pc,
            "first_candidate_pc": None if first is None or pc is None else first - pc,
            "error_t": None if err is None else err["t"]}


# -- expectations ---------------------------------------------------------------------------

Verdict = tuple[bool | None, str]


@expect
class CallExpectation(Expect):
    """A call's checks, each a function of the expectation and the observation that returns
    (holds, words to add) or, when it cannot be judged, stops the evaluation."""

    kind = "call"
    model = CallExpect

    @classmethod
    def evaluate(cls, e, record: dict) -> Verdict:
        obs = CallObservation.from_dict(record)
        words = _summary(obs)
        ok = True
        for check in _CHECKS:
            got = check(e, obs)
            if got is None:
                continue
            good, more, final = got
            words += more
            if final:
                return good, words
            ok &= good
        return bool(ok), words


expect(CallsExpectation)


def _summary(obs: CallObservation) -> str:
    """The outcome, when the error came, the diagnosis, the first candidate, the far end."""
    q, times = obs.quality, obs.times
    if obs.reached_talking:
        words = "reached Talking" + (" but the audio was silent" if q.silent_audio else
                                     f", audio both ways ({q.packets_sent} sent, {q.packets_received} received)")
    else:
        words = f"failed with {obs.softphone_error or obs.rtc_error or 'no error'}"
    if times.error is not None:
        state = times.error_state
        if times.error_from == "call":
            since = "the call began"
        else:
            since = ("the ICE state" if state in (None, ICE_STATE) else state) + " began"
        words += f" {format_duration(times.error)} after {since}"
    if obs.diagnosis:
        words += f": {obs.diagnosis}"
    if times.first_candidate is not None:
        words += f"; first relay candidate after {format_duration(times.first_candidate)}"
        if times.first_candidate_pc is not None:
            words += f" ({format_duration(times.first_candidate_pc)} after the peer connection was created)"
    far = obs.far_end
    if far is not None and obs.reached_talking:
        words += (f"; the caller leg received {far.packets_received}"
                  + (f" ({far.heard_hz} Hz)" if far.packets_received else ""))
    elif obs.reached_talking:
        words += f"; what the caller leg received is unknown: {_no_far_end(obs)}"
    if q.relay_transport:
        words += f"; audio relayed over {q.relay_transport.upper()} to TURN"
    return words


def _no_far_end(obs: CallObservation) -> str:
    """Why the media edge logged no hang-up figures for a call that reached Talking (issue 14
    item 7): it logs them when the agent's bye reaches it, and on a link slower than the call's
    audio the bye waits behind seconds of queued packets."""
    if any(e.get("kind") == "signalling" and e.get("name") == "bye_unanswered" for e in obs.timeline):
        return ("the agent's bye got no answer (on a saturated link the signalling queues behind the "
                "audio), so the media edge logged no hang-up in time")
    return "the media edge logged no hang-up within 3 s of the call's end"


# each check: None (not asked), or (holds, words, final): final stops the evaluation with
# ``holds`` as the verdict (None: an error, the check could not be evaluated)
Checked = tuple[bool | None, str, bool] | None


def _outcome(e, obs: CallObservation) -> Checked:
    if e.spec.outcome is None:
        return None
    got = ("silent" if obs.quality.silent_audio else "talking") if obs.reached_talking else "failed"
    return got == e.spec.outcome, "", False


def _error(e, obs: CallObservation) -> Checked:
    if e.spec.error is None:
        return None
    return obs.softphone_error == e.spec.error, "", False


def _audio(e, obs: CallObservation) -> Checked:
    if e.spec.audio is None:
        return None
    far = obs.far_end
    agent_heard = obs.reached_talking and not obs.quality.silent_audio
    if e.spec.audio and agent_heard and far is None:
        return None, "; what the caller leg heard is unknown (the media edge logged no hangup)", True
    far_heard = far is not None and bool(far.packets_received) and (far.heard_dbfs or -999) > SILENCE_DBFS
    return (agent_heard and far_heard) == e.spec.audio, "", False


def _candidates_count(e, obs: CallObservation) -> Checked:
    if e.spec.candidates is None:
        return None
    return obs.local_candidates == e.spec.candidates, f"; {obs.local_candidates} relay candidate(s)", False


def _relay_transport(e, obs: CallObservation) -> Checked:
    if e.spec.relay_transport is None:
        return None
    if not obs.quality.relay_transport:
        return False, "; no relay carried audio", True
    return obs.quality.relay_transport == e.spec.relay_transport, "", False


def _max_lost(e, obs: CallObservation) -> Checked:
    if e.spec.max_lost is None:
        return None
    far = obs.far_end
    if not obs.reached_talking or far is None:
        return False, "; no audio to count losses in", True
    lost = (obs.quality.packets_lost or 0, far.packets_lost or 0)
    return max(lost) <= e.spec.max_lost, f"; lost {lost[0]} to the agent, {lost[1]} to the caller", False


def _timed(key: str, label: str):
    def check(e, obs: CallObservation) -> Checked:
        bound: Bound | None = e.bounds.get(key)
        if bound is None:
            return None
        value = getattr(obs.times, label)
        if value is None:
            return False, f"; no {label.replace('_', ' ')} to time", True
        return bound.holds(value), "", False
    return check


def _sent_candidates(e, obs: CallObservation) -> Checked:
    """What the invite carried (the candidates gathered before collection ended) against
    the types allowed; host candidates kept inside the agent are named as evidence."""
    if e.spec.sent_candidates is None:
        return None
    sent, kept = obs.candidates("relay"), obs.candidates("host")
    types = [m.group(1) if (m := re.search(r" typ (\w+)", c)) else "?" for c in sent]
    words = f"; the invite carried {len(sent)} candidate{'s' if len(sent) != 1 else ''}"
    if sent:
        words += " (" + ", ".join(f"{t} {c.split()[4]}" for t, c in zip(types, sent)) + ")"
    if kept:
        words += f"; {len(kept)} host candidate{'s' if len(kept) != 1 else ''} kept in the agent (" + \
                 ", ".join(c.split()[4] for c in kept) + ")"
    return bool(sent) and all(t in e.spec.sent_candidates for t in types), words, False


def _mdns(e, obs: CallObservation) -> Checked:
    if e.spec.mdns is None:
        return None
    hosts = [c.split()[4] for c in obs.candidates("host")]
    named = [h for h in hosts if h.endswith(".local")]
    how = 'named by mDNS' if hosts and len(named) == len(hosts) else 'with addresses' if hosts and not named \
        else 'mixed' if hosts else 'none'
    return bool(hosts) and (len(named) == len(hosts) if e.spec.mdns else not named), f"; host candidates {how}", False


def _quality(e, obs: CallObservation) -> Checked:
    """Audio quality bounds: measured once Talking, from the softphone's RTP/RTCP statistics."""
    keys = [k for k in ("loss", "jitter", "jitter_max", "rtt") if k in e.bounds]
    if not keys:
        return None
    if not obs.reached_talking:
        return False, "; never reached Talking, so no audio to measure", False
    ok, words = True, ""
    for key in keys:
        if key == "loss":
            value = obs.quality.loss
            shown = None if value is None else f"{value * 100:.1f} %"
        else:
            ms = getattr(obs.quality, f"{key}_ms")
            value = None if ms is None else ms / 1000
            shown = None if value is None else format_duration(value)
        if value is None:
            why = ("no RTCP receiver report came back during the call: talk longer"
                   if key == "rtt" else "the softphone reported no audio statistics")
            return None, words + f"; audio {key} could not be measured ({why})", True
        words += f"; audio {key.replace('_', ' ')} {shown}"
        ok &= e.bounds[key].holds(value)
    return ok, words, False


def _vdi(e, obs: CallObservation) -> Checked:
    return (True, vdi_words(obs.vdi), False) if obs.vdi else None


def _setup(e, obs: CallObservation) -> Checked:
    bound: Bound | None = e.bounds.get("setup")
    if bound is None:
        return None
    if obs.times.talking is None:
        return False, "; never reached Talking, so no set-up time", True
    setup = obs.times.talking - obs.start
    return bound.holds(setup), f"; Talking after {format_duration(setup)}", False


def midcall(obs: CallObservation) -> dict[str, float | str | None]:
    """What followed the first ICE ``disconnected`` during Talking (of the last call, for a
    persistent connection's): when it came, the restart's start and outcome, ICE connected
    again, audio back (seconds after the disconnection)."""
    tl = obs.timeline
    talking = [e["t"] for e in tl if e.get("kind") == "state" and e.get("name") == "TalkingState"]
    t0 = talking[-1] if talking else None
    out: dict[str, float | str | None] = {"disconnected": None, "restart": None, "outcome": None, "ice_back": None,
                                          "audio_back": None}
    if t0 is None:
        return out
    cut = next((e["t"] for e in tl if e.get("kind") == "ice" and e.get("name") == "disconnected" and e["t"] >= t0),
               None)
    if cut is None:
        return out
    out["disconnected"] = cut
    after = [e for e in tl if e["t"] >= cut]
    restart = next((e for e in after if e.get("kind") == "substate" and e.get("name") == "IceRestartSubstate"), None)
    if restart is not None:
        out["restart"] = restart["t"] - cut
    done = next((e for e in after if e.get("kind") == "ice-restart"), None)
    out["outcome"] = done["name"] if done is not None else ("started" if restart is not None else "none")
    back = next((e for e in after if e.get("kind") == "ice" and e.get("name") in ("connected", "completed")), None)
    out["ice_back"] = None if back is None else back["t"] - cut
    audio = next((e for e in after if e.get("kind") == "media" and e.get("name") == "audio-back"), None)
    out["audio_back"] = None if audio is None else audio["t"] - cut
    return out


def _restart(e, obs: CallObservation) -> Checked:
    s = e.spec
    if s.ice_restart is None and s.restart_at is None and s.ice_back is None and s.audio_back is None:
        return None
    m = midcall(obs)
    if m["disconnected"] is None:
        return False, "; ICE never went disconnected during the call", True
    words = "; ICE disconnected during the call"
    ok = True
    if m["restart"] is None:
        words += ", no ICE restart"
    else:
        words += f", ICE restart {format_duration(m['restart'])} later ({m['outcome']})"
    if s.ice_restart is not None:
        ok &= m["outcome"] == s.ice_restart
    if s.restart_at is not None:
        ok &= m["restart"] is not None and e.bounds["restart_at"].holds(m["restart"])
    words += (f", ICE connected again after {format_duration(m['ice_back'])}" if m["ice_back"] is not None
              else ", ICE never connected again")
    if s.ice_back is not None:
        ok &= (m["ice_back"] is not None) == s.ice_back
    if m["audio_back"] is not None:
        words += f", audio back after {format_duration(m['audio_back'])}"
    if s.audio_back is not None:
        ok &= m["audio_back"] is not None and e.bounds["audio_back"].holds(m["audio_back"])
    return bool(ok), words, False


_CHECKS = (_outcome, _error, _audio, _candidates_count, _relay_transport, _max_lost,
           _timed("error_at", "error"), _timed("first_candidate", "first_candidate"),
           _sent_candidates, _mdns, _quality, _vdi, _setup, _restart)


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


def audio_loss(q: dict) -> float | None:
    return Quality.from_dict(q).loss
