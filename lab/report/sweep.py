"""A sweep for people: a table, and a picture where the cliff is visible.

One parameter: call set-up time (and the first relay candidate) against the parameter, with
the softphone's 8 s ICE timer drawn across, each point marked by its outcome (a failed point
is a red cross labelled with its error); below it the audio loss. Two parameters: heat maps
of the set-up time and of the audio loss, failed cells hatched in red with their error.
PNG for slides, SVG for the web, ``sweep.json`` and ``sweep.csv`` for scripts and
spreadsheets. A shard of a sweep (``--shard K/N``) writes its ``sweep.json`` only: its points
are not a grid to plot until `icelab merge` has put the shards together.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

from rich.markup import escape
from rich.table import Table

from lab.agent.constants import Timers

ICE_TIMER = Timers().ice
OUTCOME_STYLE = {"talking": ("o", "#15803d"), "silent": ("s", "#d97706"), "failed": ("X", "#b91c1c"),
                 "error": ("D", "#6b7280")}
# softphone errors shortened for a heat-map cell
SHORT = {"ice_collection_timeout": "ICE\ntimeout", "signalling_connection_failure": "signalling\nconn.",
         "signalling_handshake_failure": "signalling\nhandshake", "webrtc_error": "webrtc\nerror"}


def _ms(s: float | None) -> str:
    return "" if s is None else f"{s * 1000:.0f} ms" if s < 1 else f"{s:.2f} s"


def _pct(x: float | None) -> str:
    return "" if x is None else f"{x * 100:.1f} %"


def table(sweep) -> Table:
    t = Table(title=escape(f"sweep of {sweep.scenario}: link {sweep.link[0]}-{sweep.link[1]} ({sweep.direction}), "
                           f"call {sweep.call}"), title_justify="left")
    for p in sweep.params:
        t.add_column(p.field, justify="right")
    for col in ("outcome", "first candidate", "set-up", "first audio", "audio loss", "rtt", "verdict"):
        t.add_column(col, justify="right" if col not in ("outcome", "verdict") else "left")
    style = {"talking": "green", "silent": "yellow", "failed": "red", "error": "yellow"}
    for pt in sweep.points:
        outcome = pt.outcome if not pt.error else f"{pt.outcome}: {pt.error}"
        if pt.error_at is not None:
            outcome += f" at {_ms(pt.error_at)}"
        t.add_row(*[pt.labels[p.field] for p in sweep.params], f"[{style[pt.outcome]}]{escape(outcome)}[/]",
                  _ms(pt.first_candidate), _ms(pt.setup), _ms(pt.audio_start), _pct(pt.loss), _ms(pt.rtt), pt.verdict)
    return t


def markdown(sweep) -> str:
    head = [p.field for p in sweep.params] + ["outcome", "first candidate", "set-up", "first audio after Talking",
                                              "audio loss", "rtt", "verdict"]
    lines = [f"# Sweep of {sweep.scenario}", "",
             f"Link {sweep.link[0]}-{sweep.link[1]} ({sweep.direction}), call `{sweep.call}`, "
             f"{len(sweep.points)} runs in {sweep.wall:.0f} s ({sweep.date}).", "",
             "![sweep](sweep.svg)", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for pt in sweep.points:
        outcome = pt.outcome + (f": {pt.error}" if pt.error else "")
        lines.append("| " + " | ".join([pt.labels[p.field] for p in sweep.params] + [
            outcome, _ms(pt.first_candidate), _ms(pt.setup), _ms(pt.audio_start), _pct(pt.loss), _ms(pt.rtt),
            pt.verdict]) + " |")
    return "\n".join(lines) + "\n"


# sweep.csv after the swept settings (link.FIELD, as written): the point's attribute per column;
# times in seconds, loss as a fraction, as in sweep.json
CSV_COLUMNS = {"outcome": "outcome", "error": "error", "first_candidate_s": "first_candidate", "setup_s": "setup",
               "audio_start_s": "audio_start", "error_at_s": "error_at", "audio_loss": "loss",
               "audio_jitter_s": "jitter", "audio_rtt_s": "rtt", "verdict": "verdict"}


def write_csv(sweep, path: Path) -> Path:
    """One row per grid point, in grid order: each swept field as written (100ms), then
    CSV_COLUMNS. A run's wall time is left out: it says how busy the machine was, not what
    the network did, so the file of a merged sweep equals an unsharded one's."""
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow([f"link.{p.field}" for p in sweep.params] + list(CSV_COLUMNS))
        for pt in sweep.points:
            w.writerow([pt.labels[p.field] for p in sweep.params] +
                       ["" if getattr(pt, a) is None else getattr(pt, a) for a in CSV_COLUMNS.values()])
    return path


def write(sweep, out_dir: Path) -> Path:
    """sweep.json, sweep.csv, sweep.md, sweep.png and sweep.svg in ``out_dir/sweep-<scenario>/``
    (a shard's sweep.json alone)."""
    d = Path(out_dir) / f"sweep-{sweep.scenario}"
    d.mkdir(parents=True, exist_ok=True)
    (d / "sweep.json").write_text(json.dumps(sweep.to_dict(), indent=2) + "\n")
    if sweep.shard:
        return d
    write_csv(sweep, d / "sweep.csv")
    (d / "sweep.md").write_text(markdown(sweep))
    plot(sweep, d / "sweep")
    return d


def plot(sweep, stem: Path) -> list[Path]:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    if len(sweep.params) == 1:
        fig = _line(plt, sweep)
    else:
        fig = _heat(plt, sweep)
    outs = []
    for ext in ("png", "svg"):
        path = Path(f"{stem}.{ext}")
        fig.savefig(path, dpi=130 if ext == "png" else None, bbox_inches="tight")
        outs.append(path)
    plt.close(fig)
    return outs


def _title(sweep) -> str:
    return f"{sweep.scenario}: link {sweep.link[0]}-{sweep.link[1]} swept, call {sweep.call}"


def _line(plt, sweep):
    p = sweep.params[0]
    xs = [p.scaled(pt.values[p.field]) for pt in sweep.points]
    fig, (ax, ax2) = plt.subplots(2, 1, figsize=(10, 6.5), sharex=True, gridspec_kw={"height_ratios": [3, 2]})
    ax.axhline(ICE_TIMER, color="#b91c1c", linestyle="--", linewidth=1)
    ax.text(xs[0], ICE_TIMER, " softphone ICE timer (8 s): no relay candidate by then is ice_collection_timeout",
            color="#b91c1c", va="top", ha="left", fontsize=8)
    # set-up as a line through the points that reached Talking; failures at the error time
    ok = [(x, pt.setup) for x, pt in zip(xs, sweep.points) if pt.setup is not None]
    if ok:
        ax.plot(*zip(*ok), color="#1d4ed8", linewidth=1.5, label="call start to Talking")
    fa = [(x, pt.setup + pt.audio_start) for x, pt in zip(xs, sweep.points)
          if pt.setup is not None and pt.audio_start is not None]
    if fa:
        ax.plot(*zip(*fa), color="#0d9488", linewidth=1, linestyle="--", label="call start to audio flowing")
    fc = [(x, pt.first_candidate) for x, pt in zip(xs, sweep.points) if pt.first_candidate is not None]
    if fc:
        ax.plot(*zip(*fc), color="#64748b", linewidth=1, linestyle=":", marker=".", label="first relay candidate")
    top = ICE_TIMER * 1.25
    for x, pt in zip(xs, sweep.points):
        marker, colour = OUTCOME_STYLE[pt.outcome]
        # a failed call sits at the time of its error (after the ICE state began)
        y = pt.setup if pt.setup is not None else pt.error_at if pt.error_at is not None else ICE_TIMER * 1.1
        ax.scatter([x], [y], marker=marker, color=colour, s=60 if pt.outcome == "failed" else 36, zorder=3)
        if pt.outcome in ("failed", "error", "silent"):
            right = x > (xs[0] + xs[-1]) / 2          # keep labels inside the axes
            ax.annotate((pt.error or pt.outcome).replace("_", " "), (x, y), textcoords="offset points",
                        xytext=(-4, 6) if right else (4, 6), ha="right" if right else "left", fontsize=7,
                        color=colour, rotation=20)
        top = max(top, y * 1.15)
    for outcome in ("talking", "silent", "failed", "error"):
        if any(pt.outcome == outcome for pt in sweep.points):
            m, c = OUTCOME_STYLE[outcome]
            ax.scatter([], [], marker=m, color=c, label=outcome)
    ax.set_ylim(0, top)
    ax.set_ylabel("seconds")
    ax.set_title(_title(sweep), fontsize=10)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.grid(alpha=0.3)
    loss = [(x, pt.loss * 100) for x, pt in zip(xs, sweep.points) if pt.loss is not None]
    if loss:
        ax2.plot(*zip(*loss), color="#7e22ce", marker="o", markersize=4)
    ax2.set_ylabel("audio loss, worse direction (%)")
    ax2.set_xlabel(f"{p.field} ({p.unit})" + (", each way" if p.field in ("delay", "jitter") and sweep.direction == "both" else ""))
    ax2.grid(alpha=0.3)
    return fig


def _heat(plt, sweep):
    import numpy as np
    from matplotlib.patches import Rectangle
    py, px = sweep.params          # the first varies slowest: rows
    ny, nx = len(py.values), len(px.values)
    fig, axes = plt.subplots(1, 2, figsize=(12, 5))
    panels = (("call start to Talking (s)", lambda pt: pt.setup, "viridis", lambda v: f"{v:.2f}"),
              ("audio loss, worse direction (%)", lambda pt: None if pt.loss is None else pt.loss * 100, "magma_r",
               lambda v: f"{v:.1f}"))
    for ax, (label, get, cmap, fmt) in zip(axes, panels):
        grid = np.full((ny, nx), np.nan)
        for i, pt in enumerate(sweep.points):
            v = get(pt)
            if v is not None:
                grid[i // nx, i % nx] = v
        finite = grid[~np.isnan(grid)]
        im = ax.imshow(grid, origin="lower", cmap=cmap, aspect="auto", vmin=0,
                       vmax=max(float(finite.max()) if finite.size else 0.0, 1.0))
        fig.colorbar(im, ax=ax, label=label)
        for i, pt in enumerate(sweep.points):
            r, c = i // nx, i % nx
            colour = OUTCOME_STYLE[pt.outcome][1]
            if pt.outcome in ("failed", "error"):
                ax.add_patch(Rectangle((c - 0.5, r - 0.5), 1, 1, facecolor="#fee2e2", edgecolor=colour,
                                       hatch="//", linewidth=1))
                text = SHORT.get(pt.error or "", (pt.error or pt.outcome).replace("_", " ")[:24])
                ax.text(c, r, text, ha="center", va="center", fontsize=7, color=colour, fontweight="bold")
                continue
            value = "" if np.isnan(grid[r, c]) else fmt(grid[r, c])
            if pt.outcome == "silent":
                # Talking, but no audio within the talk time: framed, value kept
                ax.add_patch(Rectangle((c - 0.45, r - 0.45), 0.9, 0.9, fill=False, edgecolor=colour, linewidth=2))
                value = (value + "\n" if value else "") + "silent"
            if value:
                ax.text(c, r, value, ha="center", va="center", fontsize=7, color="white", path_effects=_outline())
        ax.set_xticks(range(nx), [px.label(v) for v in px.values], rotation=45, fontsize=8)
        ax.set_yticks(range(ny), [py.label(v) for v in py.values], fontsize=8)
        ax.set_xlabel(px.field)
        ax.set_ylabel(py.field)
        ax.set_title(label, fontsize=10)
    fig.suptitle(_title(sweep) + "\nhatched: the call failed, with its error; framed: Talking but no audio "
                 "within the talk time", fontsize=10)
    fig.tight_layout()
    return fig


def _outline():
    import matplotlib.patheffects as pe
    return [pe.withStroke(linewidth=2, foreground="black")]
