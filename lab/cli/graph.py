"""`icelab graph`: a topology drawn into a picture (lab/report/graph.py, which needs networkx:
apart from `validate`, so that checking a file does not wait for it to load)."""

from __future__ import annotations

from pathlib import Path

from lab.core.errors import EXIT_OK, UsageError
from lab.model import load_topology
from lab.report.graph import render

from .console import err, escape, hinted


def graph(args) -> int:
    suffix = Path(args.output).suffix.lower()
    if suffix not in (".svg", ".png", ".dot"):
        raise UsageError(hinted(f"{args.output}: unknown picture format '{suffix}'", "use .svg, .png or .dot"))
    path = render(load_topology(args.file), args.output)
    err.print(f"wrote {escape(str(path))}")
    return EXIT_OK
