"""A load run: a ``call`` step with ``count`` places N calls from the members of a group (or a
lan, or one host), their starts spread over ``over``, all from one softphone process
(``python -m lab.agent.load``: one asyncio loop, each call in its host's namespace), on the
light media path unless the step says ``media: full``. Its expectations count outcomes
(``calls: NAME``): how many reached Talking, how many had audio both ways, how many failed
and with which errors.

Each call is judged as a single call's ``audio: true`` is: it reached Talking, the agent heard
the caller's audio and the caller leg heard the agent's; on the light path, in addition, every
frame received at either end was one of the far end's frames, in order (lab/core/lightaudio.py).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from pydantic import Field

from lab.core.audio import AGENT_TONE, CALLER_TONE
from lab.core.errors import did_you_mean
from lab.core.units import Bound, format_duration, parse_bound, parse_percent

from ..observations import hangups
from .agentproc import AgentProcess
from .base import Expect, ExpectModel
from .softphone import SILENCE_DBFS, SOFTPHONE_ERRORS

TONE_TOLERANCE_HZ = 20.0    # an FFT bin of the last second is 1 Hz: 20 Hz tells the lab's tones apart


def members(topo, name: str) -> list[str] | None:
    """The agent hosts a load step's ``from`` names: a group's members, a lan's agent hosts
    (in name order), or the one agent host; None if it names none of these."""
    if name in topo.groups:
        got = topo.groups[name]
    elif name in topo.nodes and topo.nodes[name].kind == "lan":
        got = sorted(i.peer for i in topo.nodes[name].interfaces)
    elif name in topo.nodes:
        got = [name]
    else:
        return None
    return [m for m in got if m in topo.nodes and topo.nodes[m].kind == "host" and topo.nodes[m].role == "agent"]


def load_calls(topo, step) -> list[tuple[str, str]]:
    """(call id, agent host) of each call of a load step: the first ``count`` members."""
    return [(f"{step.name}-{m}", m) for m in (members(topo, step.spec.from_) or [])[:step.spec.count]]


def check_load(ck, step, topo) -> bool:
    spec, path = step.spec, step.path
    got = members(topo, spec.from_)
    if got is None:
        known = sorted(topo.groups) + sorted(n.name for n in topo.nodes.values() if n.kind == "lan")
        ck.err(path + ("from",), f"'{spec.from_}' is not a group, a lan or a host of the topology",
               did_you_mean(spec.from_, known, "groups and lans") or "name a group of the topology's 'groups:'")
        return False
    ok = True
    if not got:
        ck.err(path + ("from",), f"'{spec.from_}' has no agent hosts", "calls are placed from hosts with 'role: agent'")
        ok = False
    elif spec.count > len(got):
        ck.err(path + ("count",), f"'{spec.from_}' has {len(got)} agent host{'s' if len(got) != 1 else ''}: "
               f"{spec.count} calls need as many (one call per host)",
               f"write count: {len(got)} or less, or call from a larger group or lan")
        ok = False
    for key, allowed in (("engine", "emulated"), ("vdi", None)):
        if getattr(spec, key) != allowed:
            ck.err(path + (key,), f"'{key}: {getattr(spec, key)}' is for a single call, not a load run",
                   "leave it out of a step with 'count'")
            ok = False
    return ok


class LoadRun(AgentProcess):
    """A load step in flight: one ``python -m lab.agent.load`` for all its calls."""

    EXTRA_S = 90.0

    def __init__(self, run, step, network=None):
        """Start the load process (imports, the light path's tones encoded) while the lab's
        services start; ``go()`` at the step's time places the calls. It runs in the first
        caller's node (so the lab's teardown ends it) and makes each call's sockets in the
        call's own host's namespace."""
        spec = step.spec
        network = network or run.network
        self.step, self.run, self.network = step, run, network
        self.key = f"calls:{step.name}"
        self.calls = load_calls(run.scenario.topology, step)
        d = network.state.dir
        self.cfg = d / f"load-{step.name}.json"
        n = len(self.calls)
        self.cfg.write_text(json.dumps({
            "ca": str(d / "pki" / "ca.pem"), "talk_time": spec.talk, "media": spec.media or "light",
            "profile": spec.profile, "mdns": spec.mdns,
            "calls": [{"name": agent, "call": str(d / "calls" / f"{cid}.json"), "netns": network.node(agent).pid,
                       "at": round(spec.over * k / n, 4)} for k, (cid, agent) in enumerate(self.calls)]}))
        self.spawn(network.node(self.calls[0][1]), [sys.executable, "-m", "lab.agent.load", "--config", str(self.cfg)],
                   spec.over + spec.talk + self.EXTRA_S)

    def go(self) -> "LoadRun":
        super().go()
        self.run.event(self.key, f"{len(self.calls)} calls from {self.step.spec.from_} over "
                                 f"{format_duration(self.step.spec.over)}, {self.step.spec.media or 'light'} media")
        return self

    def finish(self, run) -> None:
        self.end()
        outcomes = {item["call"]: item for _, item in self.lines if "call" in item and "outcome" in item}
        if not outcomes:
            run.result.observations[self.key] = {
                "error": f"the load run reported no call: {self.stderr.decode(errors='replace')[-400:]}"}
            return
        far = self._far_ends(run, [cid for cid, agent in self.calls
                                   if (outcomes.get(agent) or {}).get("outcome", {}).get("reached_talking")])
        records = [call_record(agent, self.started + (outcomes[agent]["t0"] if agent in outcomes else 0.0),
                               (outcomes.get(agent) or {}).get("outcome"), far.get(cid), self.step.spec.media or "light")
                   for cid, agent in self.calls]
        obs = {"from": self.step.spec.from_, "count": len(records), "media": self.step.spec.media or "light",
               "over": self.step.spec.over, "calls": records, "tally": tally(records)}
        run.result.observations[self.key] = obs
        failed = sorted((r for r in records if r["error"]), key=lambda r: r["error_t"] or r["t"])
        if failed:
            first = failed[0]
            run.add_event(first["error_t"] or first["t"], self.key,
                          f"first failure: {first['name']} ({first['error']}), its call began at {first['t']:.2f} s")
        run.event(self.key, "ended: " + tally_words(obs["tally"], len(records)))

    def _far_ends(self, run, call_ids: list[str], wait: float = 5.0) -> dict[str, dict]:
        """Each call's hangup line in the cloud's log (what its caller leg heard), waiting a
        little for the last ones: the edge logs it just after it answers the agent's bye."""
        logs = [Path(rs.log_path) for rs in getattr(run.network, "services", None) or [] if rs.service == "signalling"]
        out: dict[str, dict] = {}
        end = time.monotonic() + wait
        while True:
            for log in logs:
                out.update(hangups(log.read_text(errors="replace")))
            if all(c in out for c in call_ids) or time.monotonic() > end:
                return out
            time.sleep(0.2)


def call_record(agent: str, t: float, outcome: dict | None, far: dict | None, media: str) -> dict:
    """One call of a load run, as the counts need it: did it talk, did audio flow both ways
    (and on the light path, was every frame the far end's, in order), which error, when."""
    if outcome is None:
        return {"name": agent, "t": round(t, 3), "talking": False, "audio": False, "error": "no outcome",
                "error_at": None, "error_t": None, "setup": None}
    q = outcome.get("quality") or {}
    tl = outcome.get("timeline") or []
    talking = bool(outcome.get("reached_talking"))
    heard = (talking and not q.get("silent_audio") and abs((q.get("heard_hz") or 0) - CALLER_TONE) < TONE_TOLERANCE_HZ)
    far_heard = (far is not None and bool(far.get("packets_received"))
                 and (far.get("heard_dbfs") or -999) > SILENCE_DBFS
                 and abs((far.get("heard_hz") or 0) - AGENT_TONE) < TONE_TOLERANCE_HZ)
    if media == "light":
        for counts in (q.get("payloads"), (far or {}).get("payloads")):
            counts = counts or {}
            if not counts.get("matched") or counts.get("foreign") or counts.get("in_sequence") != counts.get("matched"):
                heard = False
    err = outcome.get("softphone_error") or outcome.get("rtc_error")
    if not talking and err is None:
        err = outcome.get("state") or "failed"
    err_ev = next((e for e in tl if e.get("kind") == "error"), None)
    state_t = err_ev and next((e["t"] for e in tl if e.get("kind") == "state" and e.get("name") == err_ev.get("state")),
                              None)
    talk_t = next((e["t"] for e in tl if e.get("kind") == "state" and e.get("name") == "TalkingState"), None)
    return {"name": agent, "t": round(t, 3), "talking": talking, "audio": bool(heard and far_heard),
            "error": err if not talking else None,
            "error_at": None if err_ev is None or state_t is None else round(err_ev["t"] - state_t, 3),
            "error_t": None if err_ev is None else round(t + err_ev["t"], 3),
            "setup": None if talk_t is None else round(talk_t, 3)}


def tally(records: list[dict]) -> dict:
    errors: dict[str, int] = {}
    for r in records:
        if r["error"]:
            errors[r["error"]] = errors.get(r["error"], 0) + 1
    setups = sorted(r["setup"] for r in records if r["setup"] is not None)
    return {"talking": sum(r["talking"] for r in records), "audio": sum(r["audio"] for r in records),
            "failed": sum(1 for r in records if not r["talking"]), "errors": errors,
            "setup_median": setups[len(setups) // 2] if setups else None, "setup_max": setups[-1] if setups else None}


def tally_words(t: dict, n: int) -> str:
    words = f"{t['talking']} of {n} reached Talking, {t['audio']} with audio both ways"
    if t["failed"]:
        words += f", {t['failed']} failed (" + ", ".join(f"{k} {v}" for k, v in sorted(t["errors"].items())) + ")"
    if t["setup_median"] is not None:
        words += f"; set-up median {format_duration(t['setup_median'])}, max {format_duration(t['setup_max'])}"
    return words


# -- expectations ---------------------------------------------------------------------------

COUNT_OR_SHARE = ("a count or a share of the calls: 200, '>= 198', '>= 99%', '<= 1%', 0")


class CallsExpect(ExpectModel):
    calls: str = Field(description="the load step's name (a call step with 'count')")
    talking: int | str | None = Field(None, description="how many calls reached Talking: " + COUNT_OR_SHARE)
    audio: int | str | None = Field(None, description=(
        "how many calls had audio both ways (each verified at both ends): " + COUNT_OR_SHARE))
    failed: int | str | None = Field(None, description="how many calls failed: " + COUNT_OR_SHARE)
    errors: dict[str, int | str] | None = Field(None, description=(
        "calls failed with each softphone error: {ice_collection_timeout: '>= 1'}; " + COUNT_OR_SHARE))
    every_failure: str | None = Field(None, description=(
        "every call that failed failed with this softphone error (holds when none failed)"))


def count_bound(value: int | str) -> tuple[Bound | None, bool, str | None, str | None]:
    """(bound, is a share, problem, hint): ``200`` or ``'>= 198'`` a count, ``'>= 99%'`` a share."""
    hint = f"write {COUNT_OR_SHARE}"
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        return None, False, f"{value!r} is not a count", hint
    if isinstance(value, int):
        return (Bound(value, value, str(value)), False, None, None) if value >= 0 else \
            (None, False, f"{value} is negative", hint)
    if "%" in value:
        b, m, h = parse_bound(value, parse_percent, "share", hint)
        if m and value.strip().endswith("%") and value.strip()[0].isdigit():
            v, m, h = parse_percent(value)
            b = None if m else Bound(v, v, value)
        return b, True, m, h

    def count(text: str):
        t = text.strip()
        return (float(t), None, None) if t.isdigit() else (None, f"'{t}' is not a whole number", hint)
    if value.strip().isdigit():
        return Bound(int(value), int(value), value), False, None, None
    b, m, h = parse_bound(value, count, "count", hint)
    return b, False, m, h


class CallsExpectation(Expect):
    """The counts of a load step's outcomes (registered by call.py, after the call's own:
    the order in which expectation kinds are listed to people)."""

    kind = "calls"
    model = CallsExpect
    example = "add e.g. \"talking: '>= 99%'\" or 'every_failure: ice_collection_timeout'"

    @classmethod
    def target_known(cls, ck, target: str, path: tuple, steps: list) -> bool:
        return any(s.action == "call" and s.name == target and getattr(s.spec, "count", None) is not None
                   for s in steps)

    @classmethod
    def check(cls, ck, exp, path: tuple) -> bool:
        spec, ok = exp.spec, True
        keyed = [(k, getattr(spec, k)) for k in ("talking", "audio", "failed") if getattr(spec, k) is not None]
        keyed += [(("errors", name), v) for name, v in (spec.errors or {}).items()]
        for key, value in keyed:
            where = path + (key if isinstance(key, tuple) else (key,))
            b, share, m, h = count_bound(value)
            if m:
                ck.err(where, m, h)
                ok = False
                continue
            exp.bounds[".".join(key) if isinstance(key, tuple) else key] = (b, share)
        names = list(spec.errors or {}) + ([spec.every_failure] if spec.every_failure else [])
        for name in names:
            if name not in SOFTPHONE_ERRORS:
                ck.err(path + (("every_failure",) if name == spec.every_failure else ("errors", name)),
                       f"'{name}' is not an error the softphone reports",
                       did_you_mean(name, SOFTPHONE_ERRORS, "softphone errors"))
                ok = False
        return ok

    @classmethod
    def evaluate(cls, e, record: dict) -> tuple[bool | None, str]:
        if "error" in record:
            return None, record["error"]
        t, n = record["tally"], record["count"]
        words = tally_words(t, n)
        ok = True
        for key, (bound, share) in e.bounds.items():
            got = t["errors"].get(key.split(".", 1)[1], 0) if key.startswith("errors.") else t[key]
            ok &= bound.holds(got / n if share else got)
        if e.spec.every_failure is not None:
            others = {k: v for k, v in t["errors"].items() if k != e.spec.every_failure}
            if others:
                words += "; failures other than " + e.spec.every_failure + ": " + \
                    ", ".join(f"{k} {v}" for k, v in sorted(others.items()))
                ok = False
        fails = [r for r in record["calls"] if r["error"]]
        if fails:
            at = [r["error_at"] for r in fails if r["error_at"] is not None]
            first = min(fails, key=lambda r: r["error_t"] or r["t"])
            words += f"; the first failure was {first['name']}'s call, begun at {first['t']:.2f} s"
            if at:
                words += f"; errors {format_duration(min(at))}-{format_duration(max(at))} after their state began"
        return bool(ok), words
