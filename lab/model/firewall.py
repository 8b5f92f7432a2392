"""Firewall and NAT policies: their YAML structure, their meaning checks, and the resolved form.

A ``firewall`` node is a router with a policy written the way engineers write rule tables
(protocol, source, destination, port, direction, action); a ``nat`` node is a router that
translates addresses with one of the RFC 4787 behaviours Linux can produce. Directions are
relative to the *inside*: the node's interfaces towards the neighbours listed in ``inside``;
every other interface is outside. Rendering to nftables is in ``lab/net/firewall.py`` and
``lab/net/nat.py``; this module never touches the kernel, except that a user's own nftables
file is syntax-checked with ``nft -c`` in a throwaway network namespace.
"""

from __future__ import annotations

import functools
import ipaddress
import json
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Union

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, field_validator
from pydantic_core import PydanticCustomError

from lab.core.errors import did_you_mean, format_path
from lab.core.ports import AWS_RETURN_RANGES

# Documented softphone requirements (shared/reference/softphone.md): the presets' return rules
# open the ranges as AWS writes them
EPHEMERAL = AWS_RETURN_RANGES
SIGNALLING_PORT, TURN_PORT = 443, 3478


class _Strict(BaseModel):
    # defer_build: a model's validator is built the first time it validates, so `icelab
    # validate` builds only the kinds a topology uses (start-up time, issue #12)
    model_config = ConfigDict(extra="forbid", defer_build=True)


Ports = Union[int, str, list[Union[int, str]]]
Addresses = Union[str, list[str]]

# pydantic's lax mode reads true as port 1, and an empty list would mean "no restriction":
# both are accepted silently and match what the author did not write.
_PORT_HINT = "write 3478, '49152-65535' or a list of them; leave '{field}' out to match every port"
_ADDRESS_HINT = "write an address, a prefix, a set, a node or a list of them; leave '{field}' out (or write 'any') to match every address"


def refusal(message: str, hint: str) -> PydanticCustomError:
    """A structural error with its own message and hint (schema._translate shows both)."""
    return PydanticCustomError("icelab", "{message}", {"message": message, "hint": hint})


def _check_ports(value, field: str):
    items = value if isinstance(value, list) else [value]
    if isinstance(value, list) and not value:
        raise refusal("an empty list of ports matches every port, not none", _PORT_HINT.format(field=field))
    for item in items:
        if isinstance(item, bool):
            words = "yes, on and true" if item else "no, off and false"
            raise refusal(f"{str(item).lower()} is not a port (YAML reads {words} as {str(item).lower()})",
                          _PORT_HINT.format(field=field))
    return value


def _check_addresses(value, field: str):
    if isinstance(value, list) and not value:
        raise refusal("an empty list of addresses matches every address, not none", _ADDRESS_HINT.format(field=field))
    return value


class FwRule(_Strict):
    """One line of the rule table."""

    name: str | None = Field(None, description="a name shown in counters and reports")
    direction: Literal["outbound", "inbound"] = Field(description="relative to the inside: outbound leaves it")
    action: Literal["accept", "drop", "reject"]
    proto: Literal["tcp", "udp", "icmp", "any"] = Field("any", description="protocol")
    src: Addresses | None = Field(None, description="source: address, prefix, set name, node name or 'any' (or a list)")
    dst: Addresses | None = Field(None, description="destination: address, prefix, set name, node name or 'any'")
    port: Ports | None = Field(None, description="destination port(s): 3478, '49152-65535' or a list")
    sport: Ports | None = Field(None, description="source port(s)")
    log: bool = Field(False, description="also log matching packets (prefix 'icelab <node> rN')")

    @field_validator("port", "sport", mode="before")
    @classmethod
    def _ports(cls, value, info):
        return _check_ports(value, info.field_name)

    @field_validator("src", "dst", mode="before")
    @classmethod
    def _addresses(cls, value, info):
        return _check_addresses(value, info.field_name)


class AddressSet(_Strict):
    """A named address set: literal members, and/or prefixes from an AWS ip-ranges.json file."""

    addresses: list[str] = Field(default_factory=list, description="addresses, prefixes or node names")
    ip_ranges: str | None = Field(None, description="path (relative to the topology file) of an ip-ranges.json")
    service: str | list[str] | None = Field(None, description="keep prefixes of this AWS service (e.g. AMAZON_CONNECT)")
    region: str | list[str] | None = Field(None, description="keep prefixes of this region (e.g. us-east-1)")


class Preset(_Strict):
    """The documented softphone requirements as rules."""

    name: Literal["softphone"]
    to: Addresses | None = Field(None, description="where TURN and signalling are (set, node, prefix); default any")
    clients: list[Literal["windows", "linux"]] = Field(
        default_factory=lambda: ["windows", "linux"],
        description="agent OSes whose ephemeral ports the stateless return rules open")

    @field_validator("to", mode="before")
    @classmethod
    def _addresses(cls, value, info):
        return _check_addresses(value, info.field_name)


class Policy(_Strict):
    outbound: Literal["accept", "drop", "reject"] = "accept"
    inbound: Literal["accept", "drop", "reject"] = "drop"


class _RouteSpec(_Strict):
    to: str
    via: str


class FirewallNode(_Strict):
    """A router with a policy: stateful (conntrack) or stateless (every direction its own rule)."""

    kind: Literal["firewall"]
    label: str | None = None
    zone: str | None = None
    routes: list[_RouteSpec] | None = Field(None, description="static routes (replace the computed ones)")
    mode: Literal["stateful", "stateless"] = Field("stateful", description="stateless: no connection tracking at all")
    inside: list[str] = Field(description="neighbour nodes on the inside (lans, routers, hosts)")
    policy: Policy = Field(default_factory=Policy, description="default action per direction")
    icmp: Literal["accept", "drop"] = Field("accept", description="ICMP both ways (ping, path MTU)")
    sets: dict[str, AddressSet] = Field(default_factory=dict, description="named address sets")
    presets: list[Union[Literal["softphone"], Preset]] = Field(default_factory=list)
    rules: list[FwRule] = Field(default_factory=list)
    ruleset: str | None = Field(None, description="your own nftables file, loaded verbatim instead of rules")


class NatNode(_Strict):
    """A NAT router with an RFC 4787 behaviour."""

    kind: Literal["nat"]
    label: str | None = None
    zone: str | None = None
    routes: list[_RouteSpec] | None = None
    type: Literal["port-restricted", "symmetric", "full-cone"] = Field(
        "port-restricted", description="port-restricted: masquerade; symmetric: fully-random; full-cone: 1:1")
    inside: list[str] = Field(description="neighbour nodes on the inside")
    host: str | None = Field(None, description="full-cone: the inside host mapped 1:1 to the outside address")
    udp_timeout: int = Field(30, ge=1, le=86400, description="conntrack UDP timeout, unreplied (s)")
    udp_stream_timeout: int = Field(120, ge=1, le=86400, description="conntrack UDP timeout, assured stream (s)")
    ports: str | None = Field(None, description="the outside source-port pool, e.g. '50000-50015' (masquerade to :50000-50015): "
                                                "flows beyond it to one destination find no port (docs/scale.md)")


# RFC 5780 section 4.3 / 4.4 words for what each type should measure
NAT_BEHAVIOUR = {
    "port-restricted": ("endpoint-independent", "address-and-port-dependent"),
    "symmetric": ("address-and-port-dependent", "address-and-port-dependent"),
    "full-cone": ("endpoint-independent", "endpoint-independent"),
}


_ITEM_MODEL = {"rules": FwRule, "presets": Preset, "sets": AddressSet}


@functools.cache
def _adapter(kind) -> TypeAdapter:
    """Adapters are built on first use, like the models (start-up time, issue #12)."""
    return TypeAdapter(kind)


def parse_firewall(raw: dict, translate, doc, name: str):
    """Structure of a firewall node, rule by rule: a broken rule is reported at its own path
    and left out, and the node itself stays (its links do not turn into 'unknown node')."""
    base = {k: v for k, v in raw.items() if k not in _ITEM_MODEL}
    problems = []
    try:
        node = FirewallNode.model_validate(base)
    except ValidationError as exc:
        return None, [translate(e, doc, ("nodes", name), FirewallNode, tuple(e["loc"])) for e in exc.errors()]
    update = {}
    for key, model in _ITEM_MODEL.items():
        if key not in raw:
            continue
        value = raw[key]
        path = ("nodes", name, key)
        want = dict if key == "sets" else list
        if not isinstance(value, want):
            problems.append(doc.problem(path, f"must be a {'mapping' if want is dict else 'list'}",
                                        "see docs/firewall.md for the format"))
            continue
        good = {} if want is dict else []
        for k, item in (value.items() if want is dict else enumerate(value)):
            try:
                if key == "presets" and isinstance(item, dict):
                    v = Preset.model_validate(item)      # report against the mapping form only
                elif key == "presets":
                    v = _adapter(Literal["softphone"]).validate_python(item)
                else:
                    v = model.model_validate(item)
            except ValidationError as exc:
                seen = set()
                for e in exc.errors():
                    # drop pydantic's union-member tags ('str', 'list[str]', 'int'); one message per place
                    rel = tuple(x for x in e["loc"] if not (isinstance(x, str) and (x in ("str", "int") or "[" in x)))
                    if rel in seen:
                        continue
                    seen.add(rel)
                    problems.append(translate(e, doc, path + (k,), _ITEM_MODEL[key], rel))
                continue
            if want is dict:
                good[k] = v
            else:
                good.append(v)
        update[key] = good
    return node.model_copy(update=update), problems


# -- resolved form ---------------------------------------------------------------------


@dataclass
class Rule:
    number: int
    name: str
    direction: str                  # outbound / inbound
    action: str                     # accept / drop / reject
    proto: str = "any"
    src: list[str] = field(default_factory=list)       # nft words: 10.0.0.0/8, @connect
    dst: list[str] = field(default_factory=list)
    dport: list[tuple[int, int]] = field(default_factory=list)
    sport: list[tuple[int, int]] = field(default_factory=list)
    log: bool = False
    match: str = ""                 # a raw nft match (built-in rules: ct state ...)

    def to_dict(self) -> dict:
        return {"number": self.number, "name": self.name, "direction": self.direction, "action": self.action,
                "proto": self.proto, "src": self.src, "dst": self.dst,
                "port": [_port_text(p) for p in self.dport], "sport": [_port_text(p) for p in self.sport],
                "log": self.log}


@dataclass
class FirewallPolicy:
    mode: str
    inside: list[str]               # interface names
    outside: list[str]
    sets: dict[str, list[str]] = field(default_factory=dict)   # name -> prefixes
    rules: list[Rule] = field(default_factory=list)
    ruleset: Path | None = None     # user's own nftables file
    defines: dict[str, str] = field(default_factory=dict)

    kind = "firewall"

    def to_dict(self) -> dict:
        return {"mode": self.mode, "inside": self.inside, "outside": self.outside,
                "sets": self.sets, "rules": [r.to_dict() for r in self.rules],
                "ruleset": str(self.ruleset) if self.ruleset else None}


@dataclass
class NatPolicy:
    type: str
    inside: list[str]
    outside: list[str]
    public: str | None              # the outside address (first outside interface)
    host: str | None = None         # full cone: inside host's address
    udp_timeout: int = 30
    udp_stream_timeout: int = 120
    ports: tuple[int, int] | None = None    # the outside source-port pool; None: any port

    kind = "nat"

    def to_dict(self) -> dict:
        d = {"type": self.type, "inside": self.inside, "outside": self.outside, "public": self.public,
             "host": self.host, "udp_timeout": self.udp_timeout, "udp_stream_timeout": self.udp_stream_timeout,
             "mapping": NAT_BEHAVIOUR[self.type][0], "filtering": NAT_BEHAVIOUR[self.type][1]}
        if self.ports is not None:
            d["ports"] = list(self.ports)
        return d


def _port_text(p: tuple[int, int]) -> str:
    return str(p[0]) if p[0] == p[1] else f"{p[0]}-{p[1]}"


# -- checks --------------------------------------------------------------------------


_PORT_RE = re.compile(r"^\s*(\d+)\s*(?:-\s*(\d+))?\s*$")


def parse_ports(value, err, path) -> list[tuple[int, int]] | None:
    """'3478', 3478, '49152-65535' or a list of those; overlapping ranges are an error
    (nft refuses them, and they are usually a typo)."""
    items = value if isinstance(value, list) else [value]
    out: list[tuple[tuple[int, int], int]] = []
    ok = True
    for j, item in enumerate(items):
        p = path + ((j,) if isinstance(value, list) else ())
        m = _PORT_RE.match(str(item)) if not isinstance(item, bool) else None
        if not m:
            err(p, f"'{item}' is not a port or port range", "write 3478 or '49152-65535'")
            ok = False
            continue
        lo = int(m.group(1))
        hi = int(m.group(2)) if m.group(2) else lo
        if not (1 <= lo <= 65535 and 1 <= hi <= 65535):
            err(p, f"port {item} is out of range", "ports go from 1 to 65535")
            ok = False
            continue
        if lo > hi:
            err(p, f"port range {lo}-{hi} is backwards", f"write {hi}-{lo}")
            ok = False
            continue
        for (a, b), k in out:
            if lo <= b and a <= hi:
                err(p, f"port range {_port_text((lo, hi))} overlaps {_port_text((a, b))}",
                    "merge the overlapping ranges into one")
                ok = False
                break
        else:
            out.append(((lo, hi), j))
    return sorted(r for r, _ in out) if ok else None


MAX_IP_RANGES_BYTES = 16 * 2**20     # AWS's file is about 2 MB; JSON this size parses in a fraction of a second


def load_ip_ranges(path: Path, service, region, shown: str | None = None) -> tuple[list[str] | None, str | None, str | None]:
    """IPv4 prefixes of an ip-ranges.json file (AWS's published format), filtered.
    Returns (prefixes, error, hint); ``shown`` is the path as the author wrote it."""
    real, path = path, (shown or str(path))
    try:
        with open(real, "rb") as f:
            raw = f.read(MAX_IP_RANGES_BYTES + 1)
        if len(raw) > MAX_IP_RANGES_BYTES:
            return None, f"ip-ranges file {path} is larger than {MAX_IP_RANGES_BYTES // 2**20} MB", \
                "AWS's own ip-ranges.json is about 2 MB: is this the right file?"
        data = json.loads(raw.decode("utf-8"))
    except FileNotFoundError:
        return None, f"ip-ranges file {path} not found", "the path is relative to the topology file"
    except RecursionError:
        return None, f"ip-ranges file {path} is nested too deep to read", \
            'AWS format: {"syncToken": ..., "createDate": ..., "prefixes": [{"ip_prefix": ..., ...}]}'
    except (OSError, ValueError) as exc:
        return None, f"cannot read ip-ranges file {path}: {exc}", "it must be JSON in AWS's ip-ranges.json format"
    prefixes = data.get("prefixes") if isinstance(data, dict) else None
    if not isinstance(prefixes, list):
        return None, f"{path} has no 'prefixes' list", \
            'AWS format: {"syncToken": ..., "createDate": ..., "prefixes": [{"ip_prefix": ..., "region": ..., "service": ...}]}'
    services = {service} if isinstance(service, str) else set(service or [])
    regions = {region} if isinstance(region, str) else set(region or [])
    out, seen_s, seen_r = [], set(), set()
    for p in prefixes:
        if not isinstance(p, dict) or "ip_prefix" not in p:
            continue
        seen_s.add(str(p.get("service")))
        seen_r.add(str(p.get("region")))
        if services and p.get("service") not in services:
            continue
        if regions and p.get("region") not in regions:
            continue
        try:
            out.append(str(ipaddress.ip_network(p["ip_prefix"], strict=False)))
        except ValueError:
            return None, f"{path}: bad ip_prefix {p['ip_prefix']!r}", None
    if not out:
        return None, f"no prefixes in {path} match service {sorted(services) or 'any'} and region {sorted(regions) or 'any'}", \
            f"services there: {', '.join(sorted(seen_s))}; regions: {', '.join(sorted(seen_r))}"
    return sorted(set(out), key=lambda s: ipaddress.ip_network(s)), None, None


def nft_variable(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_]", "_", name)


def check_ruleset(path: Path, defines: dict[str, str]) -> str | None:
    """nft's own complaint about the user's file (with its file and line), or None.
    Checked with ``nft -c`` in a throwaway network namespace: never the root ruleset."""
    nft = shutil.which("nft")
    unshare = shutil.which("unshare")
    if nft is None or unshare is None:
        return "cannot check it: 'nft' or 'unshare' is missing (run 'sudo make setup')"
    with tempfile.TemporaryDirectory(prefix="icelab-nft-") as tmp:
        top = Path(tmp) / "check.nft"
        top.write_text(render_defines(defines) + f'include "{path.resolve()}"\n')
        # -n: a new, empty network namespace; -r (as non-root): a user namespace to own it
        cmd = [unshare, "-n"] if os.geteuid() == 0 else [unshare, "-rn"]
        try:
            r = subprocess.run(cmd + [nft, "-c", "-f", str(top)], capture_output=True, text=True, timeout=20)
        except subprocess.TimeoutExpired:
            return "nft -c timed out"
        if r.returncode != 0:
            text = (r.stderr or r.stdout).strip()
            if text.startswith("unshare:"):     # no namespace for the check: say so, not "syntax error"
                return (f"cannot check it here ({text}); user namespaces may be disabled: "
                        "validate as root (sudo icelab validate ...)")
            return text.replace(str(top), "(icelab variables)")
    return None


def render_defines(defines: dict[str, str]) -> str:
    return "".join(f"define {k} = {v}\n" for k, v in defines.items())


class PolicyResolver:
    """Meaning checks for firewall and nat nodes, run by the topology validator once
    interfaces have names and addresses. ``err(path, message, hint)`` records a problem."""

    def __init__(self, err, file: str, nodes: dict, specs: dict, neighbours: dict[str, set[str]] | None = None):
        self.err = err
        self.neighbours = neighbours or {}   # node -> the nodes linked to it (from the file's links)
        self.base = Path(file).resolve().parent if file else Path.cwd()
        self.nodes = nodes          # resolved Node objects
        self.specs = specs          # parsed node specs

    def run(self) -> None:
        for name, spec in self.specs.items():
            node = self.nodes.get(name)
            if node is None:
                continue
            if isinstance(spec, FirewallNode):
                node.policy = self._firewall(name, spec, node)
            elif isinstance(spec, NatNode):
                node.policy = self._nat(name, spec, node)

    # inside / outside -------------------------------------------------------------

    def _sides(self, name, spec, node) -> tuple[list[str], list[str]] | None:
        path = ("nodes", name, "inside")
        neighbours = sorted(self.neighbours.get(name, set())) or [i.peer for i in node.interfaces]
        ok = True
        for j, n in enumerate(spec.inside):
            if n not in self.specs:
                self.err(path + (j,), f"unknown node '{n}'", did_you_mean(n, self.specs, "nodes"))
                ok = False
            elif n not in neighbours:
                self.err(path + (j,), f"'{n}' is not a neighbour of '{name}'",
                         "inside names the nodes linked to it: " + (", ".join(neighbours) or "none"))
                ok = False
        if not ok or not node.interfaces:
            return None
        if not spec.inside:
            self.err(path, "inside is empty", "name the neighbour(s) on the inside, e.g. inside: [office-lan]")
            return None
        inside = [i.name for i in node.interfaces if i.peer in spec.inside]
        outside = [i.name for i in node.interfaces if i.peer not in spec.inside]
        if not outside:
            self.err(path, f"every neighbour of '{name}' is inside: nothing is outside",
                     "leave the uplink (towards the internet) out of inside")
            return None
        return inside, outside

    # addresses ------------------------------------------------------------------------

    def _address_words(self, value, sets: dict, path) -> list[str] | None:
        """'any', literal addresses/prefixes, set names (@set) and node names (their addresses)."""
        if value is None:
            return []
        items = value if isinstance(value, list) else [value]
        out: list[str] = []
        ok = True
        for j, item in enumerate(items):
            p = path + ((j,) if isinstance(value, list) else ())
            item = str(item)
            if item == "any":
                return []
            if item in sets:
                out.append("@" + nft_variable(item))
                continue
            if item in self.nodes or item in self.specs:
                node = self.nodes.get(item)
                addrs = [str(a.ip) for a in node.addresses] if node else []
                if node is not None and node.kind == "lan":
                    addrs = sorted({str(i.subnet) for n in self.nodes.values() for i in n.interfaces
                                    if i.peer == item and i.subnet})
                if not addrs and node is not None and node.interfaces:
                    self.err(p, f"node '{item}' has no address", "name a host or router, or a lan (its subnet)")
                    ok = False
                out += addrs
                continue
            try:
                out.append(str(ipaddress.ip_network(item, strict=False)))
                continue
            except ValueError:
                pass
            self.err(p, f"unknown set or node '{item}'",
                     did_you_mean(item, list(sets) + list(self.specs), "sets and nodes") or
                     "write an address, a prefix, 'any', a set defined under 'sets' or a node name")
            ok = False
        return out if ok else None

    def _sets(self, name, spec) -> dict[str, list[str]]:
        out = {}
        for sname, s in spec.sets.items():
            path = ("nodes", name, "sets", sname)
            members: list[str] = []
            if not re.match(r"^[A-Za-z][A-Za-z0-9_-]*$", sname):
                self.err(path, f"set name '{sname}' cannot be used", "use letters, digits, '-' and '_'")
                continue
            words = self._address_words(s.addresses, {}, path + ("addresses",)) if s.addresses else []
            if words is None:
                continue
            members += words
            if s.ip_ranges:
                pr, msg, hint = load_ip_ranges(self.base / s.ip_ranges, s.service, s.region, s.ip_ranges)
                if msg:
                    self.err(path + ("ip_ranges",), msg, hint)
                    continue
                members += pr
            elif s.service or s.region:
                self.err(path, "service and region filter an ip-ranges.json file", "add ip_ranges: path/to/ip-ranges.json")
                continue
            if not members:
                self.err(path, f"set '{sname}' is empty", "give it addresses or an ip_ranges file")
                continue
            nets = sorted({ipaddress.ip_network(m, strict=False) for m in members})
            out[sname] = [str(n) for n in ipaddress.collapse_addresses(nets)]
        return out

    # firewall ----------------------------------------------------------------------

    def _firewall(self, name, spec: FirewallNode, node) -> FirewallPolicy | None:
        sides = self._sides(name, spec, node)
        sets = self._sets(name, spec)
        known_sets = {s: True for s in spec.sets}
        rules: list[Rule] = []

        def add(**kw):
            rules.append(Rule(number=0, **kw))

        if spec.ruleset is not None:
            if spec.rules or spec.presets or spec.sets:
                self.err(("nodes", name, "ruleset"), "a firewall takes either 'ruleset' or rules/presets/sets, not both",
                         "put everything in your nftables file, or remove 'ruleset'")
                return None
            path = self.base / spec.ruleset
            if not path.is_file():
                self.err(("nodes", name, "ruleset"), f"nftables file {spec.ruleset} " +
                         ("is not a file" if path.exists() else "not found"), "the path is relative to the topology file")
                return None
            if sides is None:
                return None
            defines = self.defines(node, *sides)
            msg = check_ruleset(path, defines)
            if msg:
                self.err(("nodes", name, "ruleset"), "nft rejects the ruleset:\n" + msg,
                         "fix the file; variables available: " + ", ".join("$" + k for k in defines))
                return None
            return FirewallPolicy(spec.mode, sides[0], sides[1], ruleset=path, defines=defines)

        for d in ("outbound", "inbound"):
            if spec.mode == "stateful":
                add(name=f"established/related, {d}", direction=d, action="accept",
                    match="ct state established,related")
        if spec.icmp == "accept":
            for d in ("outbound", "inbound"):
                add(name=f"icmp, {d}", direction=d, action="accept", proto="icmp")
        for j, pr in enumerate(spec.presets):
            pr = Preset(name=pr) if isinstance(pr, str) else pr
            path = ("nodes", name, "presets", j)
            to = self._address_words(pr.to, known_sets, path + ("to",))
            if to is None:
                continue
            add(name="softphone: signalling TCP 443 out", direction="outbound", action="accept", proto="tcp",
                dst=to, dport=[(SIGNALLING_PORT, SIGNALLING_PORT)])
            add(name="softphone: TURN UDP 3478 out", direction="outbound", action="accept", proto="udp",
                dst=to, dport=[(TURN_PORT, TURN_PORT)])
            if spec.mode == "stateless":
                eph = [EPHEMERAL[c] for c in dict.fromkeys(pr.clients)]
                ranges = _merge(eph)
                add(name="softphone: TCP 443 return to ephemeral ports", direction="inbound", action="accept",
                    proto="tcp", src=to, sport=[(SIGNALLING_PORT, SIGNALLING_PORT)], dport=ranges)
                add(name="softphone: UDP 3478 return to ephemeral ports", direction="inbound", action="accept",
                    proto="udp", src=to, sport=[(TURN_PORT, TURN_PORT)], dport=ranges)
        for j, r in enumerate(spec.rules):
            path = ("nodes", name, "rules", j)
            src = self._address_words(r.src, known_sets, path + ("src",))
            dst = self._address_words(r.dst, known_sets, path + ("dst",))
            dport = parse_ports(r.port, self.err, path + ("port",)) if r.port is not None else []
            sport = parse_ports(r.sport, self.err, path + ("sport",)) if r.sport is not None else []
            if (r.port is not None or r.sport is not None) and r.proto not in ("tcp", "udp"):
                self.err(path + ("proto",), f"ports need proto tcp or udp, not {r.proto}", "add proto: udp (or tcp)")
                continue
            if None in (src, dst, dport, sport):
                continue
            add(name=r.name or f"rules[{j}]", direction=r.direction, action=r.action, proto=r.proto,
                src=src, dst=dst, dport=dport, sport=sport, log=r.log)
        for d in ("outbound", "inbound"):
            act = getattr(spec.policy, d)
            add(name=f"default {act}, {d}", direction=d, action=act)
        for i, r in enumerate(rules):
            r.number = i + 1
        if sides is None:
            return None
        return FirewallPolicy(spec.mode, sides[0], sides[1], sets=sets, rules=rules)

    def defines(self, node, inside, outside) -> dict[str, str]:
        """Variables a user's nftables file can use: $inside, $outside (interface sets),
        $if_<neighbour> (the interface towards it), $addr_<node> (each node's first address)."""
        d = {"inside": "{ " + ", ".join(f'"{i}"' for i in inside) + " }",
             "outside": "{ " + ", ".join(f'"{i}"' for i in outside) + " }"}
        for i in node.interfaces:
            d[f"if_{nft_variable(i.peer)}"] = f'"{i.name}"'
        for n in self.nodes.values():
            if n.addresses:
                d[f"addr_{nft_variable(n.name)}"] = str(n.addresses[0].ip)
        return d

    # nat -------------------------------------------------------------------------------

    def _nat(self, name, spec: NatNode, node) -> NatPolicy | None:
        sides = self._sides(name, spec, node)
        host_addr = None
        if spec.type == "full-cone":
            if spec.host is None:
                self.err(("nodes", name, "host"), "a full-cone (1:1) NAT maps one inside host",
                         "add host: <the inside host>")
                return None
            h = self.nodes.get(spec.host)
            if spec.host not in self.specs:
                self.err(("nodes", name, "host"), f"unknown node '{spec.host}'", did_you_mean(spec.host, self.specs, "nodes"))
                return None
            if h is None or h.kind != "host" or not h.addresses:
                self.err(("nodes", name, "host"), f"'{spec.host}' is not a host with an address", "name an inside host")
                return None
            host_addr = str(h.addresses[0].ip)
        elif spec.host is not None:
            self.err(("nodes", name, "host"), f"'host' is for type full-cone, not {spec.type}", "remove it")
            return None
        ports = None
        if spec.ports is not None:
            m = re.fullmatch(r"(\d+)-(\d+)", spec.ports.strip())
            if not m or not 1024 <= int(m.group(1)) <= int(m.group(2)) <= 65535:
                self.err(("nodes", name, "ports"), f"'{spec.ports}' is not a port range from 1024 to 65535",
                         "write the pool as low-high, e.g. ports: 50000-50015")
                return None
            ports = (int(m.group(1)), int(m.group(2)))
            if spec.type == "full-cone":
                self.err(("nodes", name, "ports"), "a full-cone (1:1) NAT keeps the host's ports: a pool is for masquerade",
                         "remove ports, or use type port-restricted or symmetric")
                return None
        if sides is None:
            return None
        outside_itf = next(i for i in node.interfaces if i.name == sides[1][0])
        return NatPolicy(spec.type, sides[0], sides[1], str(outside_itf.address.ip) if outside_itf.address else None,
                         host_addr, spec.udp_timeout, spec.udp_stream_timeout, ports)


def _merge(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for lo, hi in sorted(ranges):
        if out and lo <= out[-1][1] + 1:
            out[-1] = (out[-1][0], max(out[-1][1], hi))
        else:
            out.append((lo, hi))
    return out


def parse_ephemeral(os_name: str | None, ports: str | None, err, path) -> tuple[int, int] | None:
    """A host's ephemeral port range: explicit ``ephemeral_ports`` wins over ``os``."""
    if ports is not None:
        r = parse_ports(ports, err, path + ("ephemeral_ports",))
        if not r:
            return None
        if len(r) != 1 or r[0][0] == r[0][1]:
            err(path + ("ephemeral_ports",), f"'{ports}' is not one port range", "write e.g. '49152-65535'")
            return None
        return r[0]
    if os_name is not None:
        return EPHEMERAL[os_name]
    return None


def _side(node, neighbour) -> str | None:
    """'inside' / 'outside': the side of ``node`` on which ``neighbour`` (a node) is, found
    through the subnet they share (a lan in between is transparent)."""
    addrs = [a for a in neighbour.addresses]
    for itf in node.interfaces:
        if itf.subnet is not None and any(a.ip in itf.subnet for a in addrs):
            pol = node.policy
            return "inside" if itf.name in pol.inside else "outside"
    return None


def ping_blocked(nodes: dict, path: list[str]) -> bool:
    """Does a policy on ``path`` (from routing.trace) drop a new ICMP echo or its reply?

    A nat drops what enters from outside towards the inside (nothing is mapped for it).
    A firewall passes it if the crossing direction accepts ICMP (the ``icmp`` rule or the
    default policy) and, when stateless, the reply direction too. A user's own ruleset is
    not modelled: icelab assumes it passes pings."""
    for i in range(1, len(path) - 1):
        node = nodes[path[i]]
        pol = node.policy
        if pol is None:
            continue
        came, goes = _side(node, nodes[path[i - 1]]), _side(node, nodes[path[i + 1]])
        if came is None or goes is None or came == goes:
            continue
        if pol.kind == "nat":
            if came == "outside":
                return True
            continue
        if pol.ruleset is not None:
            continue
        out = "outbound" if came == "inside" else "inbound"
        back = "inbound" if out == "outbound" else "outbound"
        if not _icmp_passes(pol, out) or (pol.mode == "stateless" and not _icmp_passes(pol, back)):
            return True
    return False


def _icmp_passes(pol: FirewallPolicy, direction: str) -> bool:
    for r in pol.rules:
        if r.direction != direction or r.match:
            continue
        if r.proto in ("icmp", "any") and not r.src and not r.dst:
            return r.action == "accept"
    return True


def rule_from_spec(topo, node: str, spec: dict) -> Rule:
    """A rule written like the YAML ones (``{direction, action, proto, src, dst, port, sport,
    name, log}``) resolved against a lab's topology and the node's sets, for adding at run
    time. Raises ValueError naming every problem."""
    try:
        r = FwRule.model_validate(spec)
    except ValidationError as exc:
        raise ValueError("; ".join(f"{format_path(e['loc'])}: {e['msg']}" +
                                   (f" (hint: {e['ctx']['hint']})" if e["type"] == "icelab" else "")
                                   for e in exc.errors())) from None
    problems: list[str] = []

    def err(path, message, hint=None):
        problems.append(f"{format_path(path)}: {message}" + (f" (hint: {hint})" if hint else ""))

    policy = topo.nodes[node].policy
    if policy is None or getattr(policy, "kind", None) != "firewall" or policy.ruleset is not None:
        raise ValueError(f"'{node}' is not a firewall with icelab rules")
    res = PolicyResolver(err, topo.file, topo.nodes, {n: None for n in topo.nodes})
    known = {s: True for s in policy.sets}
    src = res._address_words(r.src, known, ("src",))
    dst = res._address_words(r.dst, known, ("dst",))
    dport = parse_ports(r.port, err, ("port",)) if r.port is not None else []
    sport = parse_ports(r.sport, err, ("sport",)) if r.sport is not None else []
    if (r.port is not None or r.sport is not None) and r.proto not in ("tcp", "udp"):
        err(("proto",), f"ports need proto tcp or udp, not {r.proto}")
    if problems:
        raise ValueError("; ".join(problems))
    return Rule(0, r.name or "run-time rule", r.direction, r.action, r.proto, src=src, dst=dst,
                dport=dport, sport=sport, log=r.log)
