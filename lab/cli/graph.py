"""`icelab graph`: a topology drawn as .svg, .png or .dot (its own module: drawing imports
networkx and matplotlib, which `icelab validate` must not pay for)."""

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
