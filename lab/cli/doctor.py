"""`icelab doctor`: what this machine has of what labs need (lab/net/doctor.py), and which
link impairment backend labs would use (lab/net/shaping.py)."""

from __future__ import annotations

import json

from lab.core.errors import EXIT_FAIL, EXIT_OK
from lab.net.doctor import checks
from lab.net.shaping import ShapingError, backend, netem_available, shaper_requirements
from lab.report.tables import doctor_table

from .console import escape, out


def doctor(args) -> int:
    found = checks()
    ok = all(c.ok for c in found if c.required)
    have, why = netem_available()
    try:
        be, be_error = backend(), None
    except ShapingError as exc:
        be, be_error = None, str(exc)
    needs = shaper_requirements() if be is None or be.name == "shaper" else []
    ok &= be is not None and all(good for _, good, _ in needs)
    if args.json:
        print(json.dumps({"ok": ok, "checks": [c.to_dict() for c in found],
                          "impairments": {"netem": have, "netem_why": why, "backend": be and be.name,
                                          "reason": be.reason if be else be_error,
                                          "requirements": [{"what": w, "ok": g, "detail": d} for w, g, d in needs]}},
                         indent=2))
        return EXIT_OK if ok else EXIT_FAIL
    out.print(doctor_table(found))
    out.print(f"netem: {'available' if have else 'not available'}: {escape(why)}")
    if be is None:
        out.print(f"[red]link impairments: {escape(be_error)}[/]")
    else:
        out.print(f"[bold]link impairments: {'netem' if be.name == 'netem' else 'the lab shaper (NFQUEUE)'}[/], "
                  f"because {escape(be.reason)}")
    for what, good, detail in needs:
        out.print(f"  {'[green]ok[/]' if good else '[red]missing[/]'}  {escape(what)}: {escape(detail)}")
    if not ok:
        out.print("[red]something labs need is missing: run 'sudo make setup'[/]")
    return EXIT_OK if ok else EXIT_FAIL
