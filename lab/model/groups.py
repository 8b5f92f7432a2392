"""Node groups: many alike hosts declared once (a floor of 120 agents is one entry, not 120).

A group is expanded into plain nodes and links before anything else is checked, so the
structure checks, the resolver and every builder see ordinary hosts. Problems found in a
member are reported at the group's own place in the file: the expanded document maps each
member's paths back to the group (``nodes.f1-a001.os`` is ``groups.floor1.node.os``), and
identical problems of many members are reported once.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from lab.core.errors import Problem, did_you_mean, format_path
from lab.core.names import check_name
from .loader import Located, Path_

MAX_COUNT = 4096     # a /20 of hosts; far beyond what one machine runs (docs/scale.md)
FIELDS = ("count", "name", "start", "lan", "node", "link")


class Group(BaseModel):
    """Alike hosts on one lan: member i is named by the pattern and gets its address from the lan."""

    model_config = ConfigDict(extra="forbid", defer_build=True)   # built on first use (start-up, #12)
    count: int = Field(ge=1, le=MAX_COUNT, description="how many members")
    name: str = Field(description="members' names: a pattern with {n}, e.g. 'f1-agent{n:03}' gives f1-agent001 ...")
    start: int = Field(1, ge=0, description="the first member's number")
    lan: str = Field(description="the lan node every member is linked to (addresses come from its subnet)")
    node: dict[str, Any] = Field(default_factory=dict,
                                 description="options of every member, as for a host node (kind defaults to host)")
    link: dict[str, Any] = Field(default_factory=dict,
                                 description="options of every member's link to the lan (cost, impair)")


class Expanded(Located):
    """A topology document with its groups expanded. Problems in a member's paths are
    reported at the group that made it, through the document it was made from."""

    def __init__(self, inner: Located, data: dict, aliases: dict[Path_, Path_],
                 members: dict[str, list[str]] | None = None):
        super().__init__(inner.file, data, inner.lines)
        self.inner = inner
        self.aliases = aliases
        self.members = members or {}     # group -> its members' names (a scenario's calls name a group)

    def _source(self, path: Path_) -> Path_:
        path = tuple(path)
        for n in range(len(path), 0, -1):
            to = self.aliases.get(path[:n])
            if to is not None:
                return to + path[n:]
        return path

    def line(self, path: Path_) -> int | None:
        return self.inner.line(self._source(path))

    def problem(self, path: Path_, message: str, hint: str | None = None) -> Problem:
        return self.inner.problem(self._source(path), message, hint)


def member_names(pattern: str, start: int, count: int) -> tuple[list[str] | None, str | None]:
    """The members' names, or (None, why the pattern cannot make them)."""
    if "{n" not in pattern:
        return None, "has no {n}"
    try:
        return [pattern.format(n=start + i) for i in range(count)], None
    except (KeyError, IndexError, ValueError) as exc:
        return None, f"is not a pattern of {{n}} ({exc})"


def expand(doc: Located) -> tuple[Located, list[Problem]]:
    """The document with every group turned into nodes and links, and the groups' own problems.
    A broken group adds nothing, so its problems are not followed by its members'."""
    data = doc.data
    if not isinstance(data, dict) or "groups" not in data:
        return doc, []
    problems: list[Problem] = []
    groups = data["groups"]
    out = {k: v for k, v in data.items() if k != "groups"}
    if not isinstance(groups, dict):
        what = "a list" if isinstance(groups, list) else "an empty value" if groups is None else type(groups).__name__
        return Expanded(doc, out, {}), [doc.problem(("groups",), f"must be a mapping, not {what}",
                                                    "write groups as name: {count: 100, name: 'a{n:03}', lan: floor1}")]
    nodes = dict(out.get("nodes") or {}) if isinstance(out.get("nodes"), dict) else out.get("nodes")
    links = list(out.get("links") or []) if isinstance(out.get("links"), list) else out.get("links")
    aliases: dict[Path_, Path_] = {}
    members: dict[str, list[str]] = {}
    taken: dict[str, Path_] = {n: ("nodes", n) for n in (nodes if isinstance(nodes, dict) else {})}
    for gname, raw in groups.items():
        at: Path_ = ("groups", gname)
        group = _parse(doc, at, raw, problems)
        if group is None:
            continue
        names, why = member_names(group.name, group.start, group.count)
        if names is None:
            problems.append(doc.problem(at + ("name",), f"'{group.name}' {why}",
                                        "write the members' names as a pattern, e.g. 'f1-agent{n:03}'"))
            continue
        bad = next(((n, *check_name(n, "member name")) for n in names if check_name(n, "member name")[0]), None)
        if bad is not None:
            problems.append(doc.problem(at + ("name",), bad[1], bad[2]))
            continue
        clash = next((n for n in names if n in taken), None)
        if clash is not None:
            problems.append(doc.problem(at + ("name",), f"member '{clash}' is already {format_path(taken[clash])}",
                                        "give the group a pattern no other node or group uses"))
            continue
        if len(set(names)) != len(names):
            problems.append(doc.problem(at + ("name",), f"'{group.name}' gives two members the same name",
                                        "put {n} in the pattern, with enough digits: {n:03}"))
            continue
        if not isinstance(nodes, dict) or not isinstance(links, list):
            continue          # the file's own nodes or links are broken: reported by the structure checks
        spec = {"kind": "host", **group.node}
        members[gname] = names
        for member in names:
            taken[member] = at
            nodes[member] = dict(spec)
            aliases[("nodes", member)] = at + ("node",)
            i = len(links)
            links.append({**group.link, "a": member, "b": group.lan})
            aliases[("links", i)] = at + ("link",)
            aliases[("links", i, "a")] = at + ("name",)
            aliases[("links", i, "b")] = at + ("lan",)
    if isinstance(nodes, dict):
        out["nodes"] = nodes
    if isinstance(links, list) and links:
        out["links"] = links
    return Expanded(doc, out, aliases, members), problems


def _parse(doc: Located, at: Path_, raw: Any, problems: list[Problem]) -> Group | None:
    if not isinstance(raw, dict):
        problems.append(doc.problem(at, "a group must be a mapping",
                                    "write it as {count: 100, name: 'f1-agent{n:03}', lan: floor1, node: {role: agent}}"))
        return None
    ok = True
    for key in raw:
        if key not in FIELDS:
            problems.append(doc.problem(at + (key,), f"unknown field '{key}'", did_you_mean(str(key), FIELDS, "allowed fields")))
            ok = False
    for key in ("count", "name", "lan"):
        if key not in raw:
            problems.append(doc.problem(at, f"required field '{key}' is missing",
                                        "a group needs count, name (a pattern with {n}) and lan"))
            ok = False
    count = raw.get("count")
    if "count" in raw and (not isinstance(count, int) or isinstance(count, bool) or not 1 <= count <= MAX_COUNT):
        problems.append(doc.problem(at + ("count",), f"count must be a whole number from 1 to {MAX_COUNT}, not {count!r}", None))
        ok = False
    start = raw.get("start", 1)
    if not isinstance(start, int) or isinstance(start, bool) or start < 0:
        problems.append(doc.problem(at + ("start",), f"start must be a whole number from 0, not {start!r}", None))
        ok = False
    for key in ("name", "lan"):
        if key in raw and not isinstance(raw[key], str):
            problems.append(doc.problem(at + (key,), f"must be a text value, not {raw[key]!r}", None))
            ok = False
    for key in ("node", "link"):
        if key in raw and not isinstance(raw[key], dict):
            problems.append(doc.problem(at + (key,), "must be a mapping of options",
                                        "e.g. node: {role: agent, os: windows}" if key == "node" else "e.g. link: {cost: 1}"))
            ok = False
    node = raw.get("node") or {}
    if isinstance(node, dict) and node.get("kind", "host") != "host":
        problems.append(doc.problem(at + ("node", "kind"), f"a group's members are hosts, not {node.get('kind')!r}",
                                    "declare routers, lans and firewalls one by one under nodes"))
        ok = False
    link = raw.get("link") or {}
    if isinstance(link, dict):
        for key in ("a", "b", "subnet", "pool"):
            if key in link:
                problems.append(doc.problem(at + ("link", key), f"'{key}' is set by the group",
                                            "a member's link joins it to the group's lan; set cost or impair here"))
                ok = False
    if not ok:
        return None
    return Group.model_validate(raw)
