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
      - {at: 0s, probe: {name: stun, from: agent1, to: turn, proto: udp, port: 3478}}
    expect:
      - probe: stun
        reached: true
        pass: The agent's STUN/TURN packets reach the TURN server and its answers come back.
        fail: UDP 3478 dies between the agent and the TURN server.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

SOFTPHONE_ERRORS = ("unsupported_browser", "microphone_not_shared", "signalling_handshake_failure",
                    "signalling_connection_failure", "ice_collection_timeout", "user_busy_error",
                    "webrtc_error", "realtime_communication_error", "vdi_strategy_not_supported",
                    "vdi_redir_not_supported", "other")
OUTCOMES = ("talking", "failed", "silent")


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class TopologyRef(Strict):
    file: str = Field(description="topology file, relative to the scenario file")
    overrides: dict[str, Any] = Field(default_factory=dict, description=(
        "merged onto the topology document before it is checked: mappings merge key by key, "
        "anything else replaces; 'links+' appends links"))


# -- actions -----------------------------------------------------------------------------


class Probe(Strict):
    """Send a few packets from a host to a node's address and port and see what comes back.
    The lab runs an echo responder on the destination: a reply that does not come back
    while the request arrived is a return path that drops (a stateless firewall's classic)."""

    name: str | None = Field(None, description="what expectations call it (default: FROM-TO-PROTOPORT)")
    from_: str = Field(alias="from", description="source host")
    to: str = Field(description="destination node, or an IPv4 address in the lab")
    proto: Literal["udp", "tcp", "stun"] = Field("udp", description=(
        "udp or tcp to the lab's echo responder; stun: STUN Binding requests, answered by the "
        "destination's STUN/TURN server"))
    port: int = Field(ge=1, le=65535)
    sport: int | None = Field(None, ge=1, le=65535, description="source port (default: the kernel's choice)")
    count: int = Field(5, ge=1, le=1000)
    interval: str = Field("50ms", description="time between packets")
    timeout: str = Field("1s", description="how long to wait for the last reply")


class Call(Strict):
    """Place a softphone call from an agent host: the emulated softphone (lab/agent) against
    the lab's signalling mock, media edge and TURN (docs/softphone.md)."""

    name: str | None = Field(None, description="what expectations call it (default: the agent's name)")
    from_: str = Field(alias="from")
    talk: str = Field("3s", description="how long to stay in Talking before hanging up")
    profile: Literal["chrome", "aiortc-default"] = Field("chrome", description="the ICE behaviour to emulate")
    engine: Literal["emulated", "chromium"] = Field("emulated", description=(
        "emulated: the lab's softphone; chromium: the real connect-rtc-js in headless Chromium (optional package)"))
    answer: Literal["answer", "busy", "not_found", "silent"] = Field(
        "answer", description="how the cloud answers the invite (silent: never)")
    answer_delay: str = Field("0s", description="how long the cloud waits before answering the invite")
    wrong_token: bool = Field(False, description="hand the agent a contact token the cloud does not expect (403)")
    vdi: Literal["in-desktop", "redirected", "redirect-unavailable"] | None = Field(None, description=(
        "from a thin client (a host with 'vdi:'): in-desktop, the softphone runs in the virtual desktop; "
        "redirected, its RTC engine runs on the thin client and signalling stays in the desktop; "
        "redirect-unavailable, the plug-in is not ready in 10 s (vdi_redir_not_supported). "
        "Without it the softphone runs on the host itself (docs/vdi.md)"))
    mdns: bool = Field(False, description="the browser names host candidates <uuid>.local (mDNS obfuscation)")


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


class NodeAction(Strict):
    """An action on one node: ``flush-conntrack`` forgets its connections and NAT mappings
    (a firewall or NAT reboot)."""

    node: str


class TurnAction(Strict):
    """Do something to a TURN server at run time; exactly one of the fields:
    ``stop`` (the process ends: no answers at all, the kernel answers ICMP port unreachable),
    ``start`` (a stopped server starts again), ``restart`` (every allocation and nonce lost:
    embedded through its control socket, coturn by restarting the process), ``faults`` (the
    fault set from now on, docs/turn.md; embedded only), ``expire_permissions`` (every
    permission gone now; embedded only)."""

    node: str = Field(description="the host running the turn service")
    stop: bool | None = None
    start: bool | None = None
    restart: bool | None = None
    faults: dict[str, Any] | None = Field(None, description="a fault set as in docs/turn.md; {} clears it")
    expire_permissions: bool | None = None

    @property
    def verbs(self) -> list[str]:
        return [k for k in ("stop", "start", "restart", "faults", "expire_permissions")
                if getattr(self, k) not in (None, False)]


class RuleAction(Strict):
    """Change a firewall's rules at run time: ``add`` a rule written as in the topology
    (``{name, direction, action, proto, src, dst, port, sport, log}``), placed before the
    default rule of its direction; or ``delete`` one by its name or number. The nftables
    table is changed in place: every other rule keeps its counter."""

    node: str = Field(description="the firewall")
    add: dict[str, Any] | None = Field(None, description="a rule as in the topology's 'rules'")
    delete: str | int | None = Field(None, description="a rule's name or number (as 'icelab fw show' lists them)")
    before: str | int | None = Field(None, description=(
        "with add: place it before this rule (name or number, same direction) instead of before the default"))


ACTION_MODELS: dict[str, type[BaseModel]] = {
    "probe": Probe,
    "call": Call,
    "link": LinkChange,
    "flush-conntrack": NodeAction,
    "turn": TurnAction,
    "rule": RuleAction,
}
#: actions the lab cannot perform yet -> the issue that brings them
PENDING_ACTIONS: dict[str, int] = {}


class Step(BaseModel):
    """One timeline item: ``{at: 2s, <action>: {...}}``; the action's model is checked apart."""

    model_config = ConfigDict(extra="allow")
    at: str = Field(description="when, from the moment the lab is up: 0s, 500ms, 8s")


# -- expectations -------------------------------------------------------------------------


class _Expect(Strict):
    name: str | None = Field(None, description="a short name for the verdict table")
    pass_: str | None = Field(None, alias="pass", description="what it means when this holds, for people")
    fail: str | None = Field(None, description="what it means when it does not, for people")


class ProbeExpect(_Expect):
    probe: str = Field(description="the probe's name")
    reached: bool | None = Field(None, description="requests arrived and replies came back")
    request_reached: bool | None = Field(None, description="requests arrived at the destination")
    reply_reached: bool | None = Field(None, description="replies made it back to the source")
    rtt: str | None = Field(None, description="a bound on the median round-trip time, e.g. '< 50ms'")


class CallExpect(_Expect):
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


class NatExpect(_Expect):
    nat: str = Field(description="the NAT node")
    mappings: int | str | None = Field(None, description=(
        "how many mappings the NAT created during the run (its masquerade rule counts the first "
        "packet of each): 3, or a bound: '<= 3'"))


EXPECT_KEYS = {"probe": ProbeExpect, "call": CallExpect, "nat": NatExpect}


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
    duration: str | None = Field(None, description="how long to run at most (default: last action + its own time)")
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
    from lab.model.schema import ImpairSettings
    ref(LinkChange)
    impair = ImpairSettings.model_json_schema(by_alias=True, ref_template="#/$defs/{model}")
    defs.update(impair.pop("$defs", {}))
    defs["LinkChange"]["properties"].update(impair["properties"])
    defs["LinkChange"]["additionalProperties"] = False

    at = Step.model_fields["at"]
    steps = [{"type": "object", "required": ["at", action], "additionalProperties": False,
              "properties": {"at": {"type": "string", "description": at.description}, action: ref(model)}}
             for action, model in ACTION_MODELS.items()]
    schema["properties"]["timeline"] = {"type": "array", "description": "actions at given times",
                                        "items": {"oneOf": steps}}
    schema["properties"]["expect"] = {"type": "array", "description": "what must be seen",
                                      "items": {"oneOf": [ref(m) for m in EXPECT_KEYS.values()]}}
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", **schema}
