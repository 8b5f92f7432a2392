"""The topology file's structure (pydantic), its JSON Schema, and friendly structural errors.

Structure is checked item by item (each node, each link, each pool on its own) so that
one broken node does not hide the problems of the others; meaning (names, addresses,
routes, reachability) is checked afterwards in ``validate.py``.
"""

from __future__ import annotations

import datetime
import functools
import typing
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from lab.core.errors import Problem, did_you_mean
from .firewall import FirewallNode, NatNode, parse_firewall
from .groups import Group
from .loader import Located
from . import turn as turn_defaults
from .vdi import DEFAULT_PORT as VDI_PORT, VdiSpec
from .vpn import VpnSpec

SERVICES = ("turn", "signalling", "media")
KINDS = ("host", "lan", "router", "firewall", "nat", "vpn", "vdi")

SCHEMA_ID = "https://icelab.invalid/schema/topology.json"


class Strict(BaseModel):
    # defer_build: a model's validator is built the first time it validates, so `icelab
    # validate` builds only the node kinds a topology uses (start-up time, issue #12)
    model_config = ConfigDict(extra="forbid", defer_build=True)


class Route(Strict):
    """A static route. ``to`` is a prefix or ``default``; ``via`` a next hop on a connected subnet."""

    to: str = Field(description="destination prefix (10.2.0.0/16) or 'default'")
    via: str = Field(description="next-hop address on one of the node's own subnets")


class _NodeBase(Strict):
    label: str | None = Field(None, description="free text shown in pictures and tables")
    zone: str | None = Field(None, description="where the node is (office, isp, cloud ...): groups it in pictures")


class HostNode(_NodeBase):
    """An end system: an agent workstation or a server. Hosts never forward."""

    kind: Literal["host"]
    role: Literal["agent", "server"] = Field("server", description="agent workstation or server")
    services: list[Literal["turn", "signalling", "media"]] = Field(
        default_factory=list, description="cloud services this server runs")
    routes: list[Route] | None = Field(
        None, description="static routes; when given they replace the computed ones ([] = connected subnets only)")
    vpn: VpnSpec | None = Field(None, description="an OpenVPN tunnel to a vpn node (see docs/vpn.md)")
    vdi: VdiSpec | None = Field(None, description="a thin client of a vdi node's virtual desktop (see docs/vdi.md)")
    os: Literal["windows", "linux"] | None = Field(
        None, description="emulate this OS's ephemeral port range (windows 49152-65535, linux 32768-61000)")
    ephemeral_ports: str | None = Field(None, description="ephemeral port range, e.g. '49152-65535' (wins over os)")


class LanNode(_NodeBase):
    """A switched LAN: a Linux bridge in its own namespace. All links to it share one subnet."""

    kind: Literal["lan"]
    subnet: str | None = Field(None, description="the LAN's prefix, e.g. 10.1.0.0/24")
    pool: str | None = Field(None, description="allocate the subnet from this pool instead")


class RouterNode(_NodeBase):
    """A router: forwards between its links."""

    kind: Literal["router"]
    routes: list[Route] | None = Field(
        None, description="static routes; when given they replace the computed ones")


class VpnNode(_NodeBase):
    """A VPN concentrator: a router that terminates OpenVPN tunnels (see docs/vpn.md)."""

    kind: Literal["vpn"]
    routes: list[Route] | None = Field(
        None, description="static routes; when given they replace the computed ones")
    tunnel: str | None = Field(None, description="the tunnels' prefix, e.g. 10.200.0.0/24 (default: a /24 from 10.200.0.0/16)")


class VdiNode(_NodeBase):
    """A virtual desktop host in the data centre (see docs/vdi.md). Does not forward."""

    kind: Literal["vdi"]
    routes: list[Route] | None = Field(
        None, description="static routes; when given they replace the computed ones")
    port: int = Field(VDI_PORT, ge=1, le=65535,
                      description="display protocol port (Citrix HDX 1494, RDP 3389, Blast 22443, PCoIP 4172)")


Node = Annotated[Union[HostNode, LanNode, RouterNode, FirewallNode, NatNode, VpnNode, VdiNode],
                 Field(discriminator="kind")]


class Endpoint(Strict):
    node: str = Field(description="node name")
    ip: str | None = Field(None, description="this end's address (with or without /len); not for a lan end")
    ifname: str | None = Field(None, description="interface name on the node (at most 15 characters)")


class ImpairSettings(Strict):
    """One direction's impairments (see docs/impairments.md). Units are required."""

    delay: str | float | None = Field(None, description="one-way delay: 20ms, 0.2s")
    jitter: str | float | None = Field(None, description="standard deviation of the delay: 5ms")
    distribution: Literal["normal", "uniform", "pareto", "paretonormal"] | None = Field(
        None, description="distribution of the jitter (default normal)")
    loss: str | float | dict[str, Any] | None = Field(
        None, description="random loss '2%', or bursty {mean: 5%, burst: 4} or {p: 1%, r: 25%, bad: 100%, good: 0%}")
    rate: str | float | None = Field(None, description="rate limit in bit/s: 100kbit, 1mbit")
    queue: int | None = Field(None, description="packets that may wait for the rate limit (default 1000)")
    duplicate: str | float | None = Field(None, description="share of packets sent twice: 1%")
    reorder: str | float | None = Field(None, description="share of packets that skip the delay: 10%")


class LinkImpair(ImpairSettings):
    """Impairments of a link: for both directions, overridden per direction by a2b / b2a."""

    a2b: ImpairSettings | None = Field(None, description="from end a to end b: overrides the shared settings")
    b2a: ImpairSettings | None = Field(None, description="from end b to end a: overrides the shared settings")


class Link(Strict):
    a: Union[str, Endpoint] = Field(description="one end: a node name or {node, ip, ifname}")
    b: Union[str, Endpoint] = Field(description="the other end")
    subnet: str | None = Field(None, description="prefix of a point-to-point link (not for links to a lan)")
    pool: str | None = Field(None, description="allocate the point-to-point subnet from this pool")
    cost: int = Field(1, ge=1, le=65535, description="routing cost of this link")
    impair: LinkImpair | None = Field(None, description="link impairments per direction: delay, jitter, loss, rate ...")


class Pool(Strict):
    prefix: str = Field(description="the pool's prefix, e.g. 10.0.0.0/8")
    size: int = Field(description="prefix length of the subnets allocated from it, e.g. 24")


class TurnOptions(Strict):
    """Options of the `turn` role (docs/turn.md); every field has a default."""

    backend: Literal["embedded", "coturn"] = Field(
        turn_defaults.BACKEND, description="embedded: icelab's own server (faults, transaction log); coturn: Debian's turnserver")
    realm: str = Field(turn_defaults.REALM, description="long-term credential realm")
    secret: str | None = Field(turn_defaults.SECRET, description="REST credential secret (coturn use-auth-secret); null = off")
    users: dict[str, str] = Field(default_factory=dict, description="static users: name -> password")
    udp_port: int | None = Field(turn_defaults.UDP_PORT, ge=1, le=65535, description="UDP listener (null = none)")
    tcp_port: int | None = Field(turn_defaults.TCP_PORT, ge=1, le=65535, description="TCP listener (null = none)")
    tls_port: int | None = Field(turn_defaults.TLS_PORT, ge=1, le=65535, description="TLS (turns:) and plain TCP listener (null = none)")
    min_port: int = Field(turn_defaults.MIN_PORT, ge=1, le=65535, description="lowest relay port")
    max_port: int = Field(turn_defaults.MAX_PORT, ge=1, le=65535, description="highest relay port (508 beyond)")
    max_lifetime: int = Field(turn_defaults.MAX_LIFETIME, ge=turn_defaults.DEFAULT_LIFETIME, description="allocation lifetime cap, seconds")
    user_quota: int = Field(0, ge=0, description="allocations per user (486 beyond); 0 = unlimited")
    allowed_peers: list[str] = Field(default_factory=list, description="peer prefixes allowed even if denied_peers has them (never loopback, multicast, 0.0.0.0/8)")
    denied_peers: list[str] = Field(default_factory=list, description="peer prefixes refused (403)")
    allow_loopback: bool = Field(False, description="allow relaying to loopback peers")
    strict_channel_permission: bool = Field(
        False, description="a ChannelBind's permission lasts 300 s as RFC 8656 says, not the channel's 600 s as in coturn")
    faults: dict[str, Any] = Field(default_factory=dict, description="fault injection from the start (embedded only)")


class SignallingOptions(Strict):
    """Options of the `signalling` role: the signalling mock on wss and, with it, the media
    edge (docs/softphone.md)."""

    port: int = Field(443, ge=1, le=65535, description="wss listener")
    ice_servers: list[Literal["udp", "tcp", "tcp443", "tls"]] = Field(
        default_factory=lambda: ["udp"],
        description="TURN URLs the softphone is given: udp = turn:<turn>:3478?transport=udp (what Connect "
                    "sends), tcp = turn:<turn>:3478?transport=tcp, tcp443 = turn:<turn>:443?transport=tcp (plain "
                    "TCP to the TLS port, which both TURN backends serve), tls = turns:<turn>:443?transport=tcp")
    edge_candidates: Literal["relay", "host"] = Field(
        "relay", description="the media edge's ICE candidates: relay = through the lab's TURN (the agent's and the "
                             "edge's relays meet inside the TURN host); host = the signalling host's own address, so "
                             "the far side of the agent's relay crosses the cloud network (docs/softphone.md)")
    calls: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="calls the cloud expects: id -> {behaviour, answer_delay, contact_ctx}; "
                                          "scenarios fill this in")


class Services(Strict):
    """Options of the cloud services, by role."""

    turn: TurnOptions = Field(default_factory=TurnOptions)
    signalling: SignallingOptions = Field(default_factory=SignallingOptions)


class Topology(Strict):
    """An icelab topology."""

    model_config = ConfigDict(extra="forbid", defer_build=True, title="icelab topology",
                              json_schema_extra={"$id": SCHEMA_ID})
    name: str = Field(description="lab name: prefixes everything the lab creates; [a-z][a-z0-9-]*, at most 15")
    description: str | None = None
    internet: str | None = Field(None, description="the node towards which default routes point")
    pools: dict[str, Pool] = Field(default_factory=dict, description="address pools by name")
    nodes: dict[str, Node]
    groups: dict[str, Group] = Field(default_factory=dict, description="alike hosts declared once (docs/topology.md, Groups)")
    links: list[Link] = Field(default_factory=list)
    services: Services = Field(default_factory=Services, description="options of the services hosts run")


class _TopLevel(Strict):
    """The top level only; items are checked one by one."""

    name: str
    description: str | None = None
    internet: str | None = None
    pools: dict[str, Any] = Field(default_factory=dict)
    nodes: dict[str, Any]
    links: list[Any] = Field(default_factory=list)
    services: Any = None


@functools.cache
def _node_adapter() -> TypeAdapter:
    """The union of every kind, built only to word a broken node's problems as it always has."""
    return TypeAdapter(Node)


def json_schema() -> dict:
    schema = Topology.model_json_schema()
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", **schema}


def _walk_fields(model: Any, rel: tuple) -> list[str]:
    """Field names of the model found by following ``rel`` (item-relative) from ``model``."""
    for part in rel:
        if isinstance(part, int) or model is None:
            continue
        f = getattr(model, "model_fields", {}).get(part)
        model = _inner_model(f.annotation) if f is not None else None
    # the names people write: a field's alias ('from') rather than its Python name ('from_')
    return [f.alias or name for name, f in (getattr(model, "model_fields", {}) or {}).items()]


def _inner_model(ann: Any) -> type[BaseModel] | None:
    if isinstance(ann, type) and issubclass(ann, BaseModel):
        return ann
    for arg in typing.get_args(ann):
        m = _inner_model(arg)
        if m is not None:
            return m
    return None


def _translate(err: dict, doc: Located, base: tuple, model: Any, rel: tuple) -> Problem:
    """A pydantic error as a Problem people can act on. ``rel`` is the error's place
    inside the item, with pydantic's union-member names already removed."""
    path = base + rel
    typ = err["type"]
    value = err.get("input")
    field = rel[-1] if rel else None
    if typ == "icelab":        # a check of our own (firewall.refusal): its message and hint as written
        return doc.problem(path, err["msg"], err.get("ctx", {}).get("hint"))
    if typ == "missing":
        return doc.problem(path[:-1], f"required field '{field}' is missing", _HINTS.get(str(field)))
    if typ == "extra_forbidden":
        known = _walk_fields(model, rel[:-1])
        return doc.problem(path, f"unknown field '{field}'", did_you_mean(str(field), known, "allowed fields"))
    if typ == "union_tag_not_found":
        return doc.problem(path, "node has no 'kind'", "set kind to one of: " + ", ".join(KINDS))
    if typ == "union_tag_invalid":
        tag = err.get("ctx", {}).get("tag", value)
        return doc.problem(path + ("kind",), f"unknown kind '{tag}'", did_you_mean(str(tag), KINDS, "kinds"))
    if typ == "literal_error":
        expected = err.get("ctx", {}).get("expected", "")
        return doc.problem(path, f"'{value}' is not allowed here", f"use one of {expected}")
    if typ in ("model_type", "model_attributes_type", "dict_type"):
        return doc.problem(path, f"must be a mapping, not {_kind_of(value)}", None)
    if typ == "list_type":
        return doc.problem(path, f"must be a list, not {_kind_of(value)}", "write it as a YAML list: '- item'")
    if typ == "string_type":
        hint = "put it in quotes: YAML reads a value like 2024-01-31 as a date" \
            if isinstance(value, datetime.date) else None
        return doc.problem(path, f"must be a text value, not {_kind_of(value)}", hint)
    if typ in ("int_type", "int_parsing", "int_from_float"):
        return doc.problem(path, f"must be a whole number, not {value!r}", None)
    if typ in ("greater_than_equal", "less_than_equal", "greater_than", "less_than"):
        return doc.problem(path, f"{value!r} is out of range: {err['msg'].lower()}", None)
    return doc.problem(path, err["msg"], None)


def _kind_of(value: Any) -> str:
    if value is None:
        return "an empty value"
    return {dict: "a mapping", list: "a list", str: "text", int: "a number", float: "a number",
            bool: "true/false", datetime.date: "a date", datetime.datetime: "a date and time"
            }.get(type(value), type(value).__name__)


_HINTS = {
    "name": "every topology needs a lab name, e.g. 'name: office'",
    "nodes": "list the nodes under 'nodes:' as name: {kind: ...}",
    "kind": "set kind to one of: " + ", ".join(KINDS),
    "a": "a link names both ends: {a: node1, b: node2}",
    "b": "a link names both ends: {a: node1, b: node2}",
    "node": "an endpoint mapping needs the node's name: {node: edge, ip: 10.0.0.1}",
    "to": "a route needs 'to' (a prefix or default) and 'via' (next hop)",
    "via": "a route needs 'to' (a prefix or default) and 'via' (next hop)",
    "prefix": "a pool needs a prefix and a size: {prefix: 10.0.0.0/8, size: 24}",
    "size": "a pool needs a prefix and a size: {prefix: 10.0.0.0/8, size: 24}",
    "concentrator": "name the vpn node that terminates the tunnel: vpn: {concentrator: vpn-gw}",
    "desktop": "name the vdi node whose desktop this host shows: vdi: {desktop: vdi1}",
}

_BY_KIND = {"host": HostNode, "lan": LanNode, "router": RouterNode, "firewall": FirewallNode,
            "nat": NatNode, "vpn": VpnNode, "vdi": VdiNode}


def _node_problems(exc: ValidationError, doc: Located, name: str, raw: dict) -> list[Problem]:
    kind = raw.get("kind")
    model = _BY_KIND.get(kind) if isinstance(kind, str) else None
    out = []
    for e in exc.errors():
        rel = tuple(e["loc"])
        if rel and rel[0] == kind:   # pydantic names the tagged-union member first
            rel = rel[1:]
        out.append(_translate(e, doc, ("nodes", name), model, rel))
    return out


def _link_problems(exc: ValidationError, doc: Located, i: int, raw: Any) -> list[Problem]:
    """Link ends are 'name' or {node, ip, ifname}: report the branch the author meant."""
    out: list[Problem] = []
    seen_bad_end: set[str] = set()
    for e in exc.errors():
        rel = tuple(e["loc"])
        if len(rel) >= 2 and rel[0] in ("a", "b") and rel[1] in ("str", "Endpoint"):
            end = rel[0]
            given = raw.get(end) if isinstance(raw, dict) else None
            if isinstance(given, dict):
                if rel[1] == "str":
                    continue
            else:
                if end not in seen_bad_end:
                    seen_bad_end.add(end)
                    out.append(doc.problem(("links", i, end), f"must be a node name or a mapping, not {_kind_of(given)}",
                                           "write 'a: edge' or 'a: {node: edge, ip: 10.0.0.1}'"))
                continue
            rel = (end,) + rel[2:]
        out.append(_translate(e, doc, ("links", i), Link, rel))
    return out


def parse(doc: Located) -> tuple[Topology | None, list[Problem]]:
    """Check the document's structure; return the parsed topology (items that failed are
    left out) and every structural problem."""
    problems: list[Problem] = []
    if not isinstance(doc.data, dict):
        return None, [doc.problem((), f"a topology must be a mapping, not {_kind_of(doc.data)}",
                                  "start with 'name: mylab', then 'nodes:' and 'links:'")]
    try:
        top = _TopLevel.model_validate(doc.data)
    except ValidationError as exc:
        problems += [_translate(e, doc, (), _TopLevel, tuple(e["loc"])) for e in exc.errors()]
        return None, problems
    nodes: dict[str, Any] = {}
    for name, raw in top.nodes.items():
        if not isinstance(raw, dict):
            problems.append(doc.problem(("nodes", name), f"must be a mapping, not {_kind_of(raw)}",
                                        "write the node as 'name: {kind: host}'"))
            continue
        if raw.get("kind") == "firewall":
            fw, more = parse_firewall(raw, _translate, doc, name)
            problems += more
            if fw is not None:
                nodes[name] = fw
            continue
        try:
            model = _BY_KIND.get(raw.get("kind")) if isinstance(raw.get("kind"), str) else None
            nodes[name] = model.model_validate(raw) if model is not None else _node_adapter().validate_python(raw)
        except ValidationError:
            try:        # the union's errors, located as they always were (tag first)
                _node_adapter().validate_python(raw)
            except ValidationError as exc:
                problems += _node_problems(exc, doc, name, raw)
    links: list[Link | None] = []
    for i, raw in enumerate(top.links):
        try:
            links.append(Link.model_validate(raw))
        except ValidationError as exc:
            problems += _link_problems(exc, doc, i, raw)
            links.append(None)
    pools: dict[str, Pool] = {}
    for name, raw in top.pools.items():
        try:
            pools[name] = Pool.model_validate(raw)
        except ValidationError as exc:
            problems += [_translate(e, doc, ("pools", name), Pool, tuple(e["loc"])) for e in exc.errors()]
    services = Services()
    try:
        services = Services.model_validate(top.services if top.services is not None else {})
    except ValidationError as exc:
        problems += [_translate(e, doc, ("services",), Services, tuple(e["loc"])) for e in exc.errors()]
    topo = Topology.model_construct(name=top.name, description=top.description, internet=top.internet,
                                    pools=pools, nodes=nodes, links=links, services=services)
    return topo, problems
