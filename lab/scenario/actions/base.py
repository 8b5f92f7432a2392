"""What every timeline action is: a class that checks a step at load, starts it in a running
lab, and says what it did; registered by name, so that a new action is one module.

An action's class gives:

- ``model``: the step's file form (pydantic), which the JSON Schema shows editors;
- ``check(ck, step, topo)``: at load, against the topology, before anything is built; it
  reports problems with ``ck.err(path, message, hint)``, names the step (``step.name``) and
  replaces ``step.spec`` by the typed form the runner reads (seconds, not text);
- ``start(run, step)``: at the step's time; returns what is still in flight (an object with
  ``done()`` and ``finish(run)``) or None when the action is over;
- ``describe(step)``: the runner's event when the step starts;
- the runner's hooks, each a no-op unless the action needs it: ``plan(topo, steps)`` (the
  topology the lab is built from), ``before_services(run, network, steps)``,
  ``before_timeline(run, steps)``, ``capture_path(topo, step)``.

Expectations have their own registry (``EXPECTS``): the class of a ``probe:`` expectation
is the probe action's; ``nat:`` expectations read firewall counters and have no step.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema

#: a duration as a file writes it: text with a unit ('300ms'), or a bare 0; load.py reads it
#: (lab.core.units) and the step's typed form holds seconds
DURATION_SCHEMA = {"anyOf": [{"type": "string"}, {"const": 0}]}
DurationText = Annotated[str | int | float, WithJsonSchema(DURATION_SCHEMA)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class ExpectModel(Strict):
    """What every expectation has, whatever it checks: its name and its words for people."""

    name: str | None = Field(None, description="a short name for the verdict table")
    pass_: str | None = Field(None, alias="pass", description="what it means when this holds, for people")
    fail: str | None = Field(None, description="what it means when it does not, for people")


class Action:
    name: ClassVar[str]
    model: ClassVar[type[BaseModel]]
    #: the step's name must be unique among steps of this action (expectations refer to it)
    named: ClassVar[bool] = False

    @classmethod
    def check(cls, ck, step, topo) -> bool:
        return True

    @classmethod
    def start(cls, run, step) -> Any:
        return None

    @classmethod
    def describe(cls, step) -> str:
        return f"{step.action} {step.name or ''}".strip()

    @classmethod
    def plan(cls, topo, steps: list) -> None:
        """Change the (copied) topology the lab is built from, for this action's steps."""

    @classmethod
    def before_services(cls, run, network, steps: list) -> None:
        """While the lab's services start."""

    @classmethod
    def before_timeline(cls, run, steps: list) -> None:
        """Once the lab is up, before the timeline's clock starts."""

    @classmethod
    def capture_path(cls, topo, step) -> list | None:
        """The capture points on the step's packets' path (diagnose.path_points)."""
        return None


class Expect:
    """How expectations of one kind are checked at load and evaluated from observations."""

    kind: ClassVar[str]
    model: ClassVar[type[BaseModel]]
    #: the hint when an expectation of this kind checks nothing
    example: ClassVar[str] = "add e.g. 'outcome: talking'"

    @classmethod
    def observation_key(cls, target: str) -> str:
        return f"{cls.kind}:{target}"

    @classmethod
    def target_known(cls, ck, target: str, path: tuple, steps: list) -> bool:
        """The expectation's target exists (a step of this kind with that name)."""
        return any(s.action == cls.kind and s.name == target for s in steps)

    @classmethod
    def check(cls, ck, exp, path: tuple) -> bool:
        """At load, what the common checks do not cover (``ck.err`` for each problem; bounds
        into ``exp.bounds``)."""
        return True

    @classmethod
    def evaluate(cls, e, obs: dict) -> tuple[bool | None, str]:
        raise NotImplementedError


ACTIONS: dict[str, type[Action]] = {}
EXPECTS: dict[str, type[Expect]] = {}


def action(cls: type[Action]) -> type[Action]:
    """Register a timeline action under its name."""
    ACTIONS[cls.name] = cls
    return cls


def expect(cls: type[Expect]) -> type[Expect]:
    """Register an expectation kind under its key."""
    EXPECTS[cls.kind] = cls
    return cls


def typed(model: type[BaseModel], spec: BaseModel, **values) -> BaseModel:
    """``spec`` (a step's file form) as ``model`` (its typed form) with ``values`` converted;
    the fields the file set stay the fields set (titles are made from them)."""
    out = model.model_validate({**spec.model_dump(by_alias=True), **values})
    return model.model_construct(_fields_set=set(spec.model_fields_set), **dict(out))
