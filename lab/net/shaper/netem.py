"""The netem backend: one ``netem`` qdisc per direction, on the sending end's interface.

Used where the kernel has ``sch_netem`` (most Debian and Ubuntu hosts with modules). The
settings mean the same as with the lab's shaper; the translation takes care of the
differences: the lab's ``jitter`` is always a standard deviation (netem's uniform jitter is
a half-width, so it is scaled by sqrt(3)), and Gilbert-Elliott's ``bad``/``good`` loss are
netem's ``1-h`` and ``1-k``. netem reorders packets when jitter exceeds the packet spacing;
the lab's shaper does not (see docs/impairments.md).
"""

from __future__ import annotations

import json
import math
import subprocess
from pathlib import Path

from lab.model.impairment import Impairment
from lab.net.shaper import ShapingError
from lab.net.shaper.backend import ImpairmentBackend, register


#: standard deviation of iproute2's delay tables (normal.dist etc., in units of netem's
#: jitter): netem's pareto and paretonormal spread less than the jitter given, so the
#: lab's jitter (always the standard deviation) is divided by it; normal's is 1.
TABLE_SD = {"normal": 1.0, "pareto": 0.8197, "paretonormal": 0.8339}


def _pct(x: float) -> str:
    return f"{x * 100:.6g}%"


def _us(s: float) -> str:
    return f"{s * 1e6:.0f}us"


def netem_args(imp: Impairment) -> list[str]:
    """``tc qdisc replace dev X root netem`` arguments for one direction."""
    args = ["limit", str(max(imp.queue, 1000) if not imp.rate else imp.queue)]
    if imp.delay or imp.jitter:
        args += ["delay", _us(imp.delay)]
        if imp.jitter:
            if imp.distribution == "uniform":
                args += [_us(imp.jitter * math.sqrt(3))]
            else:
                args += [_us(imp.jitter / TABLE_SD.get(imp.distribution, 1.0)), "distribution", imp.distribution]
    if imp.burst is not None:
        b = imp.burst
        args += ["loss", "gemodel", _pct(b.p), _pct(b.r), _pct(b.bad), _pct(b.good)]
    elif imp.loss:
        args += ["loss", "random", _pct(imp.loss)]
    if imp.duplicate:
        args += ["duplicate", _pct(imp.duplicate)]
    if imp.reorder:
        args += ["reorder", _pct(imp.reorder)]
    if imp.rate:
        args += ["rate", f"{imp.rate:.0f}bit"]
    return args


def kept(imp: Impairment) -> set[str]:
    """What of these settings a netem qdisc keeps across a change that does not give it: the
    kernel (sch_netem.c, netem_change) replaces the delay distribution table and the rate
    only when a change names them, and tc names a table only with jitter, a rate only when
    there is one."""
    out = set()
    if imp.jitter and imp.distribution != "uniform":
        out.add("table")
    if imp.rate:
        out.add("rate")
    return out


def apply(st, link: int, direction: str, imp: Impairment) -> None:
    """Install or change the qdisc on the sending end (a lan's bridge port for a lan).

    A change keeps the packets the qdisc holds (``replace``), except where the kernel would
    keep an old setting the new ones drop: uniform jitter after a distribution table (netem
    would go on drawing from the table), or no rate after a rate. Then the qdisc is made
    anew, and the packets it held are lost; the lab remembers per direction what the qdisc
    holds (``netem/<link>-<direction>.json`` in the lab's run directory)."""
    spec = st.topology["links"][link]
    end = spec["a"] if direction == "a2b" else spec["b"]
    pid = st.nodes[end["node"]].pid
    mark = Path(st.dir) / "netem" / f"{link}-{direction}.json"
    try:
        held = set(json.loads(mark.read_text()))
    except (OSError, ValueError):
        held = set()
    tc = ["nsenter", "-t", str(pid), "-n", "tc", "qdisc"]
    stale = ("table" in held and imp.jitter and imp.distribution == "uniform") or ("rate" in held and not imp.rate)
    if imp.is_zero or stale:
        # the interface's own qdisc again (a veth's is noqueue), not a netem that still queues
        # and tail-drops at its limit; or a fresh netem next
        cmd = tc + ["del", "dev", end["ifname"], "root"]
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
        if r.returncode != 0 and "handle of zero" not in r.stderr:     # "handle of zero": there was none
            raise ShapingError(f"{' '.join(cmd[5:])}: {r.stderr.strip()}")
        held = set()
        if imp.is_zero:
            mark.unlink(missing_ok=True)
            return
    cmd = tc + ["replace", "dev", end["ifname"], "root", "netem", *netem_args(imp)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
    if r.returncode != 0:
        raise ShapingError(f"{' '.join(cmd[5:])}: {r.stderr.strip()}")
    # a table stays in the qdisc while the jitter is off, unused until jitter comes back
    mark.parent.mkdir(parents=True, exist_ok=True)
    mark.write_text(json.dumps(sorted(kept(imp) | ((held & {"table"}) if not imp.jitter else set()))))


@register
class Netem(ImpairmentBackend):
    """The kernel's netem: nothing to start, nothing to count beyond what tc shows."""

    name = "netem"

    def apply(self, st, link: int, per_dir: dict[str, Impairment]) -> None:
        for d, imp in per_dir.items():
            apply(st, link, d, imp)
