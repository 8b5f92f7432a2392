"""``link``: change a link's impairments at run time, effective within milliseconds
(lab/net/shaping.py); the settings are written as on a topology link."""

from __future__ import annotations

import time
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from lab.core.errors import LabError, did_you_mean
from lab.model.impairment import parse_fields
from lab.net import shaping

from ..errors import RunError
from .base import Action, action


class LinkChange(BaseModel):
    """Change a link's impairments at run time: ``{a: edge, b: isp, delay: 120ms, loss: 2%}``;
    the settings are written as on a topology link (docs/impairments.md) and apply over those
    in force (``clear: true`` starts from none)."""

    model_config = ConfigDict(extra="allow")
    a: str
    b: str
    direction: Literal["both", "a2b", "b2a"] = "both"
    clear: bool = False

    @property
    def settings(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


def joins(topo, a: str, b: str) -> bool:
    return any({l.a.node, l.b.node} == {a, b} for l in topo.links)


@action
class LinkAction(Action):
    name = "link"
    model = LinkChange

    @classmethod
    def check(cls, ck, step, topo) -> bool:
        spec, path = step.spec, step.path
        ok = True
        for end in ("a", "b"):
            name = getattr(spec, end)
            if name not in topo.nodes:
                ck.err(path + (end,), f"unknown node '{name}'", did_you_mean(name, topo.nodes, "nodes"))
                ok = False
        if ok and not joins(topo, spec.a, spec.b):
            ck.err(path, f"no link joins '{spec.a}' and '{spec.b}'", "name the two ends of one link of the topology")
            ok = False
        issues: list = []
        parse_fields(spec.settings, (), issues)
        for p, msg, hint in issues:
            ck.err(path + tuple(p), msg, hint)
            ok = False
        if not spec.settings and not spec.clear:
            ck.err(path, "the link change sets nothing", "add e.g. 'delay: 120ms' or 'loss: 2%', or 'clear: true'")
            ok = False
        step.name = f"{spec.a}-{spec.b}"
        return ok

    #: a step must take effect within this of its time, or its event says when it did
    LATE = 0.05

    @classmethod
    def before_timeline(cls, run, steps: list) -> None:
        """The lab's shaper (or netem) started before the clock: started by the first change
        instead, it cost that change 0.75-1.2 s (issue 14 item 6)."""
        if not steps:
            return
        st = run.network.state
        try:
            shaping.lab_backend(st).start(st)
        except LabError as exc:
            raise RunError(f"starting the link shaper: {exc}") from exc

    @classmethod
    def start(cls, run, step) -> None:
        # the settings stay as written: they apply over those in force, field by field
        spec = step.spec
        try:
            now = shaping.change_impairment(run.network, spec.a, spec.b, spec.settings, spec.direction,
                                            clear=spec.clear, origin=run.scenario.file)
        except LabError as exc:
            raise RunError(f"changing link {spec.a}-{spec.b}: {exc}") from exc
        what = "; ".join(f"{d}: {imp.describe()}" for d, imp in now.items())
        late = time.monotonic() - run.t0 - step.at
        if late > cls.LATE:
            what += f" (took effect {late * 1000:.0f} ms after its time)"
        run.event("link:" + step.name, what)
