"""``probe-endpoint``: the endpoint probe (``lab.probe``, what ``icelab probe`` runs on an
agent's machine) run inside a lab host against the lab's TURN and signalling, with a media
info the lab's cloud registered; and ``endpoint:`` expectations on its findings.

```yaml
timeline:
  - {at: 0s, probe-endpoint: {name: ep, from: agent1}}
expect:
  - {endpoint: ep, findings: [udp3478-blocked]}     # exactly these problems
  - {endpoint: ep, healthy: true}                   # or none at all
```
"""

from __future__ import annotations

import time
from typing import Literal

from pydantic import Field

from lab.probe.signatures import SIGNATURES

from .. import endpoint
from .base import Action, Expect, Strict, action, expect

#: the problems the probe can report (docs/probe.md): a misspelt one is refused at load
KNOWN = tuple(s.id for s in SIGNATURES if s.severity == "problem")


class ProbeEndpoint(Strict):
    """Run the endpoint probe (``icelab probe``) from a host against the lab's TURN and
    signalling; its findings name the scenario each problem looks like."""

    name: str | None = Field(None, description="what expectations call it (default: FROM-endpoint)")
    from_: str = Field(alias="from", description="the host it runs on (an agent's workstation, a virtual desktop)")
    os: Literal["windows", "linux", "macos"] | None = Field(None, description=(
        "whose ephemeral ports it sends from (default: the OS of the host's ephemeral_ports)"))
    requests: int = Field(4, ge=1, le=10, description="STUN requests from each source port")


class EndpointExpect(Strict):
    name: str | None = Field(None, description="a short name for the verdict table")
    pass_: str | None = Field(None, alias="pass", description="what it means when this holds, for people")
    fail: str | None = Field(None, description="what it means when it does not, for people")
    endpoint: str = Field(description="the probe-endpoint step's name")
    findings: list[Literal[KNOWN]] | None = Field(  # type: ignore[valid-type]
        None, description="exactly these problems found (finding ids, docs/probe.md)")
    healthy: bool | None = Field(None, description="true: no problem found (exit 0); false: some")


@action
class ProbeEndpointAction(Action):
    name = "probe-endpoint"
    model = ProbeEndpoint
    named = True

    @classmethod
    def check(cls, ck, step, topo) -> bool:
        spec = step.spec
        ok = ck.host(topo, spec.from_, step.path + ("from",))
        if not any("turn" in n.services for n in topo.hosts()) or \
                not any("signalling" in n.services for n in topo.hosts()):
            ck.err(step.path, "the endpoint probe needs the lab's TURN and signalling",
                   "add hosts with 'services: [turn]' and 'services: [signalling]'")
            ok = False
        step.name = spec.name or f"{spec.from_}-endpoint"
        return ok

    @classmethod
    def describe(cls, step) -> str:
        return f"probe-endpoint {step.name}"

    @classmethod
    def start(cls, run, step) -> "EndpointRun":
        return EndpointRun(run, step)


class EndpointRun:
    def __init__(self, run, step):
        spec = step.spec
        self.step = step
        self.key = f"endpoint:{step.name}"
        self.proc = endpoint.start(run.network, spec.from_, spec.os, ["--requests", str(spec.requests)])
        self.deadline = time.monotonic() + endpoint.TIMEOUT

    def done(self) -> bool:
        return self.proc.poll() is not None

    def finish(self, run) -> None:
        result = endpoint.finish(self.proc, max(0.1, self.deadline - time.monotonic()))
        if "error" in result:
            run.result.observations[self.key] = {"error": result["error"]}
            return
        problems = [f["id"] for f in result["findings"] if f["severity"] == "problem"]
        run.result.observations[self.key] = {
            "from_node": self.step.spec.from_, "verdict": result["verdict"], "exit_status": result["exit_status"],
            "problems": problems, "findings": result["findings"], "measurements": result["measurements"]}
        run.event(self.key, f"{result['verdict']}: {', '.join(problems) or 'no problem'} "
                            f"({result['measurements']['duration_s']} s)")


@expect
class EndpointExpectation(Expect):
    kind = "endpoint"
    model = EndpointExpect
    example = "add e.g. 'findings: [udp3478-blocked]' or 'healthy: true'"

    @classmethod
    def target_known(cls, ck, target: str, path: tuple, steps: list) -> bool:
        return any(s.action == "probe-endpoint" and s.name == target for s in steps)

    @classmethod
    def evaluate(cls, e, record: dict) -> tuple[bool | None, str]:
        spec, got = e.spec, record["problems"]
        words = f"{record['verdict']}: " + (", ".join(got) or "no problem found")
        ok = True
        if spec.findings is not None:
            ok &= sorted(got) == sorted(spec.findings)
        if spec.healthy is not None:
            ok &= (record["verdict"] == "healthy") == spec.healthy
        return bool(ok), words
