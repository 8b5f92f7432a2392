"""Link impairments in a running lab: one interface, two backends.

- **netem** (``tc qdisc ... netem``) where the kernel has ``sch_netem``: each direction is a
  netem qdisc on the sending end's interface (``shaper/netem.py``).
- **the lab's shaper** (``lab.net.shaper``) where it does not: one process per lab holds
  each impaired direction's packets in NFQUEUE and releases them on time (``shaper/process.py``).

The backend is chosen once, when the lab is built (``setup``), from ``ICELAB_SHAPER=netem|
shaper|auto`` (default auto: netem when available), and kept in the lab's state file; every
later change uses that one (``shaper/backend.py``: the interface and the registry).
Semantics are the same: delay is one way, per direction, never doubled.

Public API (used by the CLI and by scenarios)::

    set_impairment(lab, "edge", "isp", Impairment(delay=0.1), direction="a2b")
    change_impairment(lab, "edge", "isp", {"loss": "2%"})       # over what is set now
    show(lab)                                                   # -> list[LinkStatus]
    lab_backend(lab)                                            # -> the lab's ImpairmentBackend
    backend_running(lab)                                        # -> is its shaper answering

``lab`` is a lab name or a running ``Network``. Directions are named from the first node
given to the second (``a2b``: from ``a`` to ``b`` as passed here), whatever the file's order.
"""

from __future__ import annotations

import gzip
import json
import os
import platform
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lab.core.errors import InputError, Problem, did_you_mean
from lab.model.impairment import DIRECTIONS, Impairment, LinkImpairment, parse_fields
from lab.core.errors import UsageError
from .shaper import backend as backends
from .shaper.backend import ImpairmentBackend, ShapingError
# both implementations, imported here so that the registry knows them wherever shaping is used
from .shaper.netem import Netem
from .shaper.process import Shaper, answering
from .state import LabState, get, run_dir

__all__ = ["ImpairmentBackend", "Netem", "Shaper", "ShapingError"]

SETTINGS_FILE = "impairments.json"


class UnknownLink(ShapingError, UsageError):
    """The lab, a node or the link named is not there (exit status 2: a bad argument)."""


# -- backend choice ---------------------------------------------------------------------


@dataclass(frozen=True)
class Backend:
    """The backend this machine and environment would choose now, and why."""

    name: str            # netem or shaper
    reason: str


def kernel_config() -> tuple[dict[str, str], str | None]:
    for path in ("/proc/config.gz", f"/boot/config-{platform.release()}"):
        try:
            opener = gzip.open if path.endswith(".gz") else open
            with opener(path, "rt") as f:
                conf = {}
                for line in f:
                    if line.startswith("CONFIG_") and "=" in line:
                        k, v = line.strip().split("=", 1)
                        conf[k] = v
                    elif line.startswith("# CONFIG_") and line.rstrip().endswith("is not set"):
                        conf[line.split()[1]] = "n"
                return conf, path
        except OSError:
            continue
    return {}, None


def netem_available() -> tuple[bool, str]:
    """(available, why) from the kernel's build configuration and its modules."""
    conf, path = kernel_config()
    v = conf.get("CONFIG_NET_SCH_NETEM")
    if v == "y":
        return True, f"sch_netem is built into the kernel ({path})"
    if v == "m":
        mods = Path("/lib/modules") / platform.release()
        found = any(mods.rglob("sch_netem.ko*")) if mods.is_dir() else False
        if found:
            return True, f"sch_netem is a module of this kernel ({mods})"
        return False, f"sch_netem is configured as a module but {mods} does not have it"
    if path is None:
        return False, "the kernel configuration is not readable (/proc/config.gz, /boot/config-*); assuming no sch_netem"
    return False, f"the kernel has no sch_netem (CONFIG_NET_SCH_NETEM is not set in {path})"


def backend() -> Backend:
    """The choice for a lab built now (``lab_backend`` is what a running lab uses)."""
    wanted = os.environ.get("ICELAB_SHAPER", "auto")
    ok, why = netem_available()
    if wanted == "shaper":
        return Backend("shaper", "ICELAB_SHAPER=shaper asks for the lab's shaper" + (f"; {why}" if ok else ""))
    if wanted == "netem":
        if not ok:
            raise ShapingError(f"ICELAB_SHAPER=netem but {why}")
        return Backend("netem", f"ICELAB_SHAPER=netem; {why}")
    if ok:
        return Backend("netem", why)
    return Backend("shaper", why)


def shaper_requirements() -> list[tuple[str, bool, str]]:
    """(what, ok, detail) of what the lab's shaper needs."""
    conf, path = kernel_config()
    out = []
    for key, what in (("CONFIG_NETFILTER_NETLINK_QUEUE", "nfnetlink_queue"),
                      ("CONFIG_NETFILTER_XT_TARGET_NFQUEUE", "xt NFQUEUE target"),
                      ("CONFIG_IP_NF_MANGLE", "iptables mangle table"),
                      ("CONFIG_IP_NF_RAW", "iptables raw table")):
        v = conf.get(key)
        out.append((what, v in ("y", "m") or not conf, f"{key}={v or '?'}" + (f" in {path}" if path else "")))
    ipt = shutil.which("iptables-legacy")
    out.append(("iptables-legacy", ipt is not None, ipt or "missing: run 'sudo make setup' (Debian package iptables)"))
    return out


# -- settings of a lab ----------------------------------------------------------------------


@dataclass
class LinkRef:
    """A link of a running lab and how the caller named its ends."""

    index: int
    a: str
    b: str
    swapped: bool            # the caller's first node is the file's end b

    def file_direction(self, direction: str) -> str:
        """The caller's direction (from the node named first) in the file's orientation."""
        if not self.swapped:
            return direction
        return "b2a" if direction == "a2b" else "a2b"


@dataclass
class LinkStatus:
    index: int
    a: str
    b: str
    a2b: Impairment | None
    b2a: Impairment | None
    counters: dict | None = None
    where: dict | None = None

    def to_dict(self) -> dict:
        d: dict[str, Any] = {"link": self.index, "a": self.a, "b": self.b}
        for k in DIRECTIONS:
            imp = getattr(self, k)
            d[k] = None if imp is None else imp.to_dict()
        if self.counters:
            d["counters"] = self.counters
        if self.where:
            d["where"] = self.where
        return d


def _state(lab) -> LabState:
    name = lab if isinstance(lab, str) else lab.topo.name
    st = get(name)
    if st is None or not st.topology:
        raise UnknownLink(f"no lab named '{name}' is up")
    return st


def find_link(st: LabState, a: str, b: str) -> LinkRef:
    nodes = st.topology["nodes"]
    for n in (a, b):
        if n not in nodes:
            raise UnknownLink(f"lab '{st.name}' has no node '{n}'; {did_you_mean(n, nodes, 'nodes')}")
    for link in st.topology["links"]:
        ends = (link["a"]["node"], link["b"]["node"])
        if ends == (a, b) or ends == (b, a):
            return LinkRef(link["index"], link["a"]["node"], link["b"]["node"], ends == (b, a))
    peers = sorted({l["b"]["node"] for l in st.topology["links"] if l["a"]["node"] == a}
                   | {l["a"]["node"] for l in st.topology["links"] if l["b"]["node"] == a})
    raise UnknownLink(f"no link between '{a}' and '{b}' in lab '{st.name}'; '{a}' links to: {', '.join(peers) or 'nothing'}")


def _settings_path(st: LabState) -> Path:
    return run_dir() / st.name / SETTINGS_FILE


def current(st: LabState) -> dict[int, dict[str, Impairment]]:
    try:
        raw = json.loads(_settings_path(st).read_text())
    except (OSError, ValueError):
        return {}
    return {int(k): {d: Impairment.from_wire(v) for d, v in dirs.items()} for k, dirs in raw.items()}


def _save(st: LabState, settings: dict[int, dict[str, Impairment]]) -> None:
    path = _settings_path(st)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({str(k): {d: i.to_wire() for d, i in v.items()} for k, v in settings.items()}))
    os.replace(tmp, path)


# -- applying ----------------------------------------------------------------------------------


def lab_backend(lab) -> ImpairmentBackend:
    """The backend of a running lab: the one recorded when it was built. A lab whose build
    did not choose (no impairments then, and no backend possible) chooses now, once."""
    st = lab if isinstance(lab, LabState) else _state(lab)
    return backends.get(_recorded(st))


def _recorded(st: LabState) -> str:
    if st.impairment_backend is None:
        st.impairment_backend = backend().name
        fresh = get(st.name)          # the file as it is now: only this field changes
        if fresh is not None:
            fresh.impairment_backend = st.impairment_backend
            fresh.save()
    return st.impairment_backend


def _apply(st: LabState, link: int, per_dir: dict[str, Impairment]) -> None:
    """Settings in the file's orientation, through the lab's backend."""
    lab_backend(st).apply(st, link, per_dir)
    settings = current(st)
    settings.setdefault(link, {}).update(per_dir)
    _save(st, settings)


def set_impairment(lab, a: str, b: str, impairment: Impairment | LinkImpairment,
                   direction: str = "both") -> None:
    """Replace the impairments of the link between ``a`` and ``b`` (``direction``: a2b,
    b2a, both; from ``a`` to ``b`` as named here). A LinkImpairment gives both directions
    in the order a, b named here. Takes effect at once, also for packets already held."""
    st = _state(lab)
    ref = find_link(st, a, b)
    per_dir: dict[str, Impairment] = {}
    if isinstance(impairment, LinkImpairment):
        per_dir[ref.file_direction("a2b")] = impairment.a2b
        per_dir[ref.file_direction("b2a")] = impairment.b2a
    else:
        for d in (DIRECTIONS if direction == "both" else (direction,)):
            if d not in DIRECTIONS:
                raise ShapingError(f"unknown direction '{direction}'; use a2b, b2a or both")
            per_dir[ref.file_direction(d)] = impairment
    _apply(st, ref.index, per_dir)


def parse_settings(settings: dict, origin: str = "settings", rename=None) -> dict:
    """Check settings written as in a topology file ({delay: 20ms, loss: 2%}); raises
    InputError (exit status 2 at the command line) naming each bad value. ``rename`` maps
    a setting's name to what the caller calls it (a command-line flag)."""
    issues: list = []
    parse_fields(settings, (), issues)
    if issues:
        def where(path):
            head = rename(path[0]) if rename and path else None
            return head or ".".join(str(p) for p in path)
        raise InputError([Problem(origin, where(path), msg, hint) for path, msg, hint in issues])
    return settings


def change_impairment(lab, a: str, b: str, settings: dict, direction: str = "both",
                      clear: bool = False, origin: str = "settings", rename=None) -> dict[str, Impairment]:
    """Change some settings (as written in a topology file) over those in force, or over
    nothing with ``clear``. Returns the new settings per direction (caller's orientation)."""
    parse_settings(settings, origin, rename)
    st = _state(lab)
    ref = find_link(st, a, b)
    now = current(st).get(ref.index, {})
    per_dir, result = {}, {}
    for d in (DIRECTIONS if direction == "both" else (direction,)):
        if d not in DIRECTIONS:
            raise ShapingError(f"unknown direction '{direction}'; use a2b, b2a or both")
        fd = ref.file_direction(d)
        base = Impairment() if clear else now.get(fd, Impairment())
        per_dir[fd] = result[d] = parse_fields(settings, (), [], base)
    _apply(st, ref.index, per_dir)
    return result


def show(lab) -> list[LinkStatus]:
    """Every link of the lab with its impairments (None: never shaped) and, with the
    lab's shaper, its counters."""
    st = _state(lab)
    settings = current(st)
    live = lab_backend(st).status(st) if settings else {}
    out = []
    for link in st.topology["links"]:
        i = link["index"]
        s = settings.get(i, {})
        l = live.get(str(i), {})
        out.append(LinkStatus(i, link["a"]["node"], link["b"]["node"], s.get("a2b"), s.get("b2a"),
                              {d: v["counters"] | {"held": v["held"]} for d, v in l.items()} or None,
                              {d: v["where"] for d, v in l.items()} or None))
    return out


def backend_running(lab) -> bool:
    """Is what holds the lab's impairments there (its shaper answering; netem always)?"""
    st = _state(lab)
    return lab_backend(st).running(st)


def shaper_running(lab) -> bool:
    """Is the lab's shaper answering? (False also when it was never needed.)"""
    try:
        return answering(_state(lab).name)
    except ShapingError:
        return False


def setup(network) -> None:
    """Build hook: choose the lab's backend (recorded in its state) and apply the
    impairments the topology file declares."""
    links = [l for l in network.topo.links if l.impair is not None]
    st = network.state
    try:
        st.impairment_backend = backend().name
    except ShapingError:
        if links:
            raise
        st.impairment_backend = None      # nothing to shape yet: the first change chooses
    st.save()
    if not links:
        return
    be = lab_backend(st)
    be.start(st)
    for l in links:
        _apply(st, l.index, {"a2b": l.impair.a2b, "b2a": l.impair.b2a})
