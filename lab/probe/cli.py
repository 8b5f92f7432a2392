"""The probe's command line, shared by ``python -m lab.probe`` (inside lab nodes, and
where only the probe is wanted) and ``icelab probe``. Exit status: 0 healthy, 1 a problem
found, 2 bad usage (``UsageError``)."""

from __future__ import annotations

import argparse
import json
import sys

from lab.core.errors import LabError, UsageError

from . import report
from .args import EXAMPLES, add_arguments
from .hold import MAX_IDLE
from .measure import proxy_for
from .platforms import this_os
from .run import probe
from .targets import Targets, from_media_info, load_ranges, signalling_option, turn_option


def targets_from(a) -> Targets:
    if a.media_info:
        t = from_media_info(a.media_info)
    else:
        t = Targets()
    t.turn += [turn_option(x) for x in a.turn]
    if a.signalling:
        t.signalling = signalling_option(a.signalling)
    if not t.turn and not t.signalling:
        raise UsageError("nothing to probe: give --media-info FILE, or --turn HOST and --signalling URL")
    return t


def run(a) -> int:
    """Probe as the parsed arguments say; print; return the exit status."""
    targets = targets_from(a)
    if bool(a.ip_ranges) != bool(a.region):
        raise UsageError("--ip-ranges and --region go together (the region's AMAZON_CONNECT ranges)")
    if not 1 <= a.requests <= 10:
        raise UsageError(f"--requests {a.requests}: give 1 to 10 (the probe stays within 50 packets a second)")
    if not 0 <= a.idle <= MAX_IDLE:
        raise UsageError(f"--idle {a.idle:g}: give 0 to {MAX_IDLE:g} seconds (TURN keeps a permission 300 s)")
    ranges = load_ranges(a.ip_ranges, a.region) if a.ip_ranges else None
    proxy = proxy_for(targets.signalling) if targets.signalling else None
    result = probe(targets, a.os or this_os(), ca=a.ca, ranges=ranges, proxy=proxy, per_port=a.requests, idle=a.idle)
    if a.report:
        result["report"] = str(report.write(result, a.report))
    if a.json:
        print(json.dumps(result, indent=1))
    else:
        sys.stdout.write(report.render(result, "text"))
        if a.report:
            print(f"report: {result['report']}")
    return 0 if result["verdict"] == "healthy" else 1


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m lab.probe", epilog=EXAMPLES,
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                description="Probe a real agent's network the way the softphone uses it; "
                                            "name the lab scenario that reproduces each problem.")
    add_arguments(p)
    a = p.parse_args(argv)
    try:
        return run(a)
    except LabError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_status
