"""Expectations evaluated from what a run observed.

Each check is ``pass``, ``fail`` or ``error``. ``error`` means the check could not be
evaluated (the probe never ran, its process failed, the data it needs is missing): it is
never counted as a pass, and it makes the whole scenario's verdict ``error``. What each
kind of expectation checks is its class's (lab/scenario/actions/).
"""

from __future__ import annotations

from dataclasses import dataclass

from .actions import EXPECTS
from .load import Expectation, Scenario
from .observations import audio_loss

__all__ = ["Check", "audio_loss", "evaluate"]


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
    kind = EXPECTS[e.kind]
    record = observations.get(kind.observation_key(e.target))
    if record is None:
        return Check(e.title, "error", f"the {e.kind} '{e.target}' produced nothing to check", None, e.line)
    if "error" in record:
        return Check(e.title, "error", record["error"], None, e.line)
    ok, observed = kind.evaluate(e, record)
    if ok is None:
        return Check(e.title, "error", observed, None, e.line)
    return Check(e.title, "pass" if ok else "fail", observed, e.spec.pass_ if ok else e.spec.fail, e.line)
