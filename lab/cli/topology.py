"""Commands on topology files: validate, graph. Nothing here builds a lab (and nothing here
imports Mininet: `icelab validate` starts fast)."""

from __future__ import annotations

import json
from pathlib import Path

from lab.core.errors import EXIT_INPUT, EXIT_OK, InputError, UsageError
from lab.model import load_topology
from lab.report.graph import render

from .console import err, escape, hinted, out, print_problems


def validate(args) -> int:
    results, bad = [], 0
    for f in args.files:
        try:
            topo = load_topology(f)
        except InputError as exc:
            bad += 1
            results.append({"file": f, "valid": False, "problems": [p.to_dict() for p in exc.problems]})
            if not args.json:
                print_problems(exc)
            continue
        results.append({"file": f, "valid": True, "lab": topo.name, "nodes": len(topo.nodes),
                        "links": len(topo.links), "subnets": len(topo.subnets)})
        if not args.json:
            out.print(f"[green]✓[/] {escape(f)}: lab '{escape(topo.name)}', {len(topo.nodes)} nodes, "
                      f"{len(topo.links)} links, {len(topo.subnets)} subnets")
    if args.json:
        print(json.dumps(results, indent=2))
    return EXIT_INPUT if bad else EXIT_OK


def graph(args) -> int:
    suffix = Path(args.output).suffix.lower()
    if suffix not in (".svg", ".png", ".dot"):
        raise UsageError(hinted(f"{args.output}: unknown picture format '{suffix}'", "use .svg, .png or .dot"))
    path = render(load_topology(args.file), args.output)
    err.print(f"wrote {escape(str(path))}")
    return EXIT_OK
