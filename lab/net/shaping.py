"""Link impairments in a running lab: one interface, two backends.

- **netem** (``tc qdisc ... netem``) where the kernel has ``sch_netem``: each direction is a
  netem qdisc on the sending end's interface.
- **the lab's shaper** (``lab.net.shaper``) where it does not: one process per lab holds
  each impaired direction's packets in NFQUEUE and releases them on time.

``ICELAB_SHAPER=netem|shaper|auto`` (default auto: netem when available) chooses.
Semantics are the same: delay is one way, per direction, never doubled.

Public API (used by the CLI and by scenarios)::

    set_impairment(lab, "edge", "isp", Impairment(delay=0.1), direction="a2b")
    change_impairment(lab, "edge", "isp", {"loss": "2%"})       # over what is set now
    show(lab)                                                   # -> list[LinkStatus]

``lab`` is a lab name or a running ``Network``. Directions are named from the first node
given to the second (``a2b``: from ``a`` to ``b`` as passed here), whatever the file's order.
"""

from __future__ import annotations

import gzip
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from lab.core.errors import InputError, Problem, did_you_mean
from lab.model.impairment import DIRECTIONS, Impairment, LinkImpairment, parse_fields
from .shaper import ShapingError, netem
from .shaper.daemon import socket_path
from .state import LabState, get, run_dir

BACKENDS = ("netem", "shaper")
SETTINGS_FILE = "impairments.json"


# -- backend choice ---------------------------------------------------------------------


@dataclass(frozen=True)
class Backend:
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
        raise ShapingError(f"no lab named '{name}' is up")
    return st


def find_link(st: LabState, a: str, b: str) -> LinkRef:
    nodes = st.topology["nodes"]
    for n in (a, b):
        if n not in nodes:
            raise ShapingError(f"lab '{st.name}' has no node '{n}'; {did_you_mean(n, nodes, 'nodes')}")
    for link in st.topology["links"]:
        ends = (link["a"]["node"], link["b"]["node"])
        if ends == (a, b) or ends == (b, a):
            return LinkRef(link["index"], link["a"]["node"], link["b"]["node"], ends == (b, a))
    peers = sorted({l["b"]["node"] for l in st.topology["links"] if l["a"]["node"] == a}
                   | {l["a"]["node"] for l in st.topology["links"] if l["b"]["node"] == a})
    raise ShapingError(f"no link between '{a}' and '{b}' in lab '{st.name}'; '{a}' links to: {', '.join(peers) or 'nothing'}")


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


def _apply(st: LabState, link: int, per_dir: dict[str, Impairment]) -> None:
    """Settings in the file's orientation, through the backend in use."""
    be = backend()
    if be.name == "netem":
        for d, imp in per_dir.items():
            netem.apply(st, link, d, imp)
    else:
        _shaper_request(st, {"op": "set", "link": link, **{d: imp.to_wire() for d, imp in per_dir.items()}})
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
    live: dict = {}
    if backend().name == "shaper" and settings:
        try:
            live = _shaper_request(st, {"op": "show"}, start=False).get("links", {})
        except (ShapingError, OSError, ValueError):
            live = {}
    out = []
    for link in st.topology["links"]:
        i = link["index"]
        s = settings.get(i, {})
        l = live.get(str(i), {})
        out.append(LinkStatus(i, link["a"]["node"], link["b"]["node"], s.get("a2b"), s.get("b2a"),
                              {d: v["counters"] | {"held": v["held"]} for d, v in l.items()} or None,
                              {d: v["where"] for d, v in l.items()} or None))
    return out


def shaper_running(lab) -> bool:
    """Is the lab's shaper answering? (False also when it was never needed.)"""
    try:
        _ask(socket_path(_state(lab).name), {"op": "ping"}, timeout=2.0)
        return True
    except (OSError, ValueError, ShapingError):
        return False


def setup(network) -> None:
    """Build hook: apply the impairments the topology file declares."""
    links = [l for l in network.topo.links if l.impair is not None]
    if not links:
        return
    st = _state(network)
    for l in links:
        _apply(st, l.index, {"a2b": l.impair.a2b, "b2a": l.impair.b2a})


# -- the shaper process ------------------------------------------------------------------------


def _shaper_request(st: LabState, req: dict, start: bool = True) -> dict:
    path = socket_path(st.name)
    try:
        return _ask(path, req)
    except (FileNotFoundError, ConnectionRefusedError):
        if not start:
            raise ShapingError(f"the shaper of lab '{st.name}' is not running: its impaired links do not "
                               f"forward; 'icelab down {st.name}' and up again")
    _start_shaper(st)
    return _ask(path, req)


def _ask(path: Path, req: dict, timeout: float = 10.0) -> dict:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(str(path))
        s.sendall(json.dumps(req).encode() + b"\n")
        data = b""
        while not data.endswith(b"\n"):
            chunk = s.recv(1 << 16)
            if not chunk:
                break
            data += chunk
    reply = json.loads(data or b"{}")
    if not reply.get("ok"):
        raise ShapingError(f"shaper: {reply.get('error', 'no answer')}")
    return reply


def _start_shaper(st: LabState, timeout: float = 10.0) -> None:
    """Start the lab's shaper inside the lab (the namespace of its first node), marked
    with ICELAB_LAB so that the lab's cleanup ends it; detached (setsid -f) so that it
    outlives a short-lived `icelab link set`."""
    if shutil.which("iptables-legacy") is None:
        raise ShapingError("iptables-legacy is missing (the shaper queues packets with it): run 'sudo make setup'")
    node, ns = next(iter(st.nodes.items()))
    root = str(Path(__file__).resolve().parents[2])
    env = dict(os.environ, ICELAB_LAB=st.name, ICELAB_NODE="shaper",
               PYTHONPATH=os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p))
    log = (run_dir() / st.name / "shaper.log").open("ab")
    try:
        subprocess.run(["nsenter", "-t", str(ns.pid), "-n", "--", "setsid", "-f",
                        sys.executable, "-m", "lab.net.shaper.daemon", st.name],
                       env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=log, check=True, timeout=10)
    finally:
        log.close()
    path = socket_path(st.name)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            _ask(path, {"op": "ping"}, timeout=1.0)
            return
        except (OSError, ValueError):
            time.sleep(0.02)
    tail = (run_dir() / st.name / "shaper.log").read_text(errors="replace")[-800:]
    raise ShapingError(f"the shaper of lab '{st.name}' did not start:\n{tail}")
