"""`icelab link set` and `link show`: the impairments of a running lab's links (lab/net/shaping.py)."""

from __future__ import annotations

import json

from rich.text import Text

from lab.core.errors import EXIT_OK, UsageError
from lab.net.shaping import ShapingError, backend_running, change_impairment, show
from lab.report.tables import links_table

from .console import err, escape, hinted, out
from .lookup import lab_state

SETTINGS = ("delay", "jitter", "distribution", "rate", "queue", "duplicate", "reorder")


def link_set(args) -> int:
    settings = {key: getattr(args, key) for key in SETTINGS if getattr(args, key) is not None}
    if args.loss is not None:
        settings["loss"] = {"mean": args.loss, "burst": args.burst} if args.burst is not None else args.loss
    elif args.burst is not None:
        raise UsageError(hinted("--burst needs --loss (the mean loss)", "e.g. --loss 5% --burst 4"))
    if not settings and not args.clear:
        raise UsageError(hinted("nothing to set", "give --delay, --jitter, --loss, --rate ... or --clear"))
    try:
        new = change_impairment(args.name, args.a, args.b, settings, args.direction, clear=args.clear,
                                origin="icelab link set", rename=lambda k: "--burst" if k == "burst" else f"--{k}")
    except ShapingError as exc:
        err.print(Text(str(exc), style="red"))
        return exc.exit_status     # 2 for a lab, node or link that is not there
    for d, imp in new.items():
        src, dst = (args.a, args.b) if d == "a2b" else (args.b, args.a)
        out.print(escape(f"{src} -> {dst}: {imp.describe()}"))
    return EXIT_OK


def link_show(args) -> int:
    lab_state(args.name)
    links = show(args.name)
    if args.json:
        print(json.dumps([l.to_dict() for l in links], indent=2))
        return EXIT_OK
    if any(l.a2b or l.b2a for l in links) and not backend_running(args.name):
        err.print(f"[red]the shaper of lab '{escape(args.name)}' is not running: its impaired links do not forward[/]")
    out.print(links_table(args.name, links))
    return EXIT_OK
