"""`icelab validate`: topology files checked, every problem at once. Nothing here builds a lab,
draws one or imports Mininet or networkx: `icelab validate` starts fast (graph.py draws)."""

from __future__ import annotations

import json

from lab.core.errors import EXIT_INPUT, EXIT_OK, InputError
from lab.model import load_topology

from .console import print_ok, print_problems


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
            print_ok(f"{f}: lab '{topo.name}', {len(topo.nodes)} nodes, "
                     f"{len(topo.links)} links, {len(topo.subnets)} subnets")
    if args.json:
        print(json.dumps(results, indent=2))
    return EXIT_INPUT if bad else EXIT_OK
