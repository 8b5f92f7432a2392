"""The scenario file's structure (pydantic). Meaning is checked in ``load.py``.

A scenario names a topology (a file, plus overrides merged onto it), a timeline of actions
at given times, and expectations, each with texts for people::

    name: udp3478-open
    title: UDP 3478 open at the office edge
    claim: "Field guide 1: allow UDP 3478 outbound to the TURN servers"
    pair: udp3478            # the broken and the fixed scenario of a claim share a pair
    variant: fixed           # broken | fixed
    topology: ../topologies/agent-lan.yaml      # or {file: ..., overrides: {...}}
    timeline:
      - {at: 0s, probe: {name: stun, from: agent1, to: turn, proto: stun, port: 3478}}
    expect:
      - probe: stun
        reached: true
        pass: The agent's STUN/TURN packets reach the TURN server and its answers come back.
        fail: UDP 3478 dies between the agent and the TURN server.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from lab.model.schema import ImpairSettings

from .actions import ACTIONS, EXPECTS, Strict
from .actions.base import DURATION_SCHEMA, DurationText
from .actions.call import SOFTPHONE_ERRORS, Call, CallExpect
from .actions.conntrack import NodeAction
from .actions.link import LinkChange
from .actions.nat import NatExpect
from .actions.probe import Probe, ProbeExpect
from .actions.rule import RuleAction
from .actions.turn import TurnAction

__all__ = ["ACTION_MODELS", "EXPECT_KEYS", "SOFTPHONE_ERRORS", "Call", "CallExpect", "LinkChange", "NatExpect",
           "NodeAction", "Probe", "ProbeExpect", "RuleAction", "Scenario", "Step", "Strict", "SweepSpec",
           "TopologyRef", "TurnAction", "json_schema"]

OUTCOMES = ("talking", "failed", "silent")


class TopologyRef(Strict):
    file: str = Field(description="topology file, relative to the scenario file")
    overrides: dict[str, Any] = Field(default_factory=dict, description=(
        "merged onto the topology document before it is checked: mappings merge key by key, "
        "anything else replaces; 'links+' appends links"))


# -- actions and expectations: one module each (lab/scenario/actions/) ----------------------

ACTION_MODELS: dict[str, type[BaseModel]] = {name: a.model for name, a in ACTIONS.items()}
#: actions the lab cannot perform yet -> the issue that brings them
PENDING_ACTIONS: dict[str, int] = {}


class Step(BaseModel):
    """One timeline item: ``{at: 2s, <action>: {...}}``; the action's model is checked apart."""

    model_config = ConfigDict(extra="allow")
    at: DurationText = Field(description="when, from the moment the lab is up: 0s, 500ms, 8s (a bare 0 is 0s)")


EXPECT_KEYS: dict[str, type[BaseModel]] = {kind: e.model for kind, e in EXPECTS.items()}


class SweepSpec(Strict):
    """What ``icelab sweep`` varies when the command line does not say (lab/scenario/sweep.py)."""

    a: str | None = Field(None, description="one end of the swept link")
    b: str | None = Field(None, description="the other end")
    direction: Literal["both", "a2b", "b2a"] = "both"
    call: str | None = Field(None, description="the call to time (default: the first)")
    params: list[str] = Field(default_factory=list, description="default parameters: ['link.delay=0..400ms/9']")
PENDING_EXPECTS: dict[str, int] = {}


class Scenario(Strict):
    """An icelab scenario."""

    model_config = ConfigDict(extra="forbid", title="icelab scenario", populate_by_name=True)
    name: str = Field(description="[a-z][a-z0-9-]*: names the report folder")
    title: str | None = None
    description: str | None = None
    claim: str | None = Field(None, description="the field-guide claim this scenario tests")
    pair: str | None = Field(None, description="the broken and fixed scenarios of a claim share a pair name")
    variant: Literal["broken", "fixed"] | None = None
    lab: str | None = Field(None, description="lab name (default: the topology's)")
    topology: str | TopologyRef
    duration: DurationText | None = Field(None, description="how long to run at most (default: last action + its own time)")
    capture: Literal["auto", "none"] = Field("auto", description=(
        "auto: capture every interface on the paths of the probes and calls, to show where packets died"))
    timeline: list[Any] = Field(default_factory=list)
    expect: list[Any] = Field(default_factory=list)
    sweep: SweepSpec | None = Field(None, description="defaults for 'icelab sweep': the link, the call, the parameters")


def json_schema() -> dict:
    """The scenario file's JSON Schema, for editors (``icelab schema scenario``).

    The timeline and expectations are plain lists in ``Scenario`` because their items are
    checked one by one (so that one broken step does not hide the others); here each item
    gets the shape an author needs: ``at`` plus exactly one action, an expectation naming
    exactly one probe or call. Built from ACTION_MODELS and EXPECT_KEYS, so a new action
    appears here without further edits."""
    schema = Scenario.model_json_schema(by_alias=True)
    defs = schema.setdefault("$defs", {})

    def ref(model: type[BaseModel]) -> dict:
        if model.__name__ not in defs:
            sub = model.model_json_schema(by_alias=True, ref_template="#/$defs/{model}")
            defs.update(sub.pop("$defs", {}))
            defs[model.__name__] = sub
        return {"$ref": f"#/$defs/{model.__name__}"}

    # a link change takes the settings of a topology link beside its own fields
    ref(LinkChange)
    impair = ImpairSettings.model_json_schema(by_alias=True, ref_template="#/$defs/{model}")
    defs.update(impair.pop("$defs", {}))
    defs["LinkChange"]["properties"].update(impair["properties"])
    defs["LinkChange"]["additionalProperties"] = False

    at = Step.model_fields["at"]
    steps = [{"type": "object", "required": ["at", action], "additionalProperties": False,
              "properties": {"at": {**DURATION_SCHEMA, "description": at.description}, action: ref(model)}}
             for action, model in ACTION_MODELS.items()]
    schema["properties"]["timeline"] = {"type": "array", "description": "actions at given times",
                                        "items": {"oneOf": steps}}
    schema["properties"]["expect"] = {"type": "array", "description": "what must be seen",
                                      "items": {"oneOf": [ref(m) for m in EXPECT_KEYS.values()]}}
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", **schema}
