"""``icelab policy check``: the engineer's own rules in a lab, a verdict per softphone
requirement. The work is in lab/scenario/policy.py; the output in lab/report/policy.py."""

from __future__ import annotations

from pathlib import Path

from lab.core.errors import EXIT_FAIL, EXIT_OK
from lab.model.policy.deploy import deployment
from lab.report import policy as report
from lab.scenario.policy import check as run_check
from lab.scenario.policy import load_policy, media_info

from .console import err, escape, out
from .signals import interruptible


@interruptible()
def check(args) -> int:
    d = deployment(args.agents, args.os or ["windows"], args.ip_ranges, args.region, args.interfaces, args.nat,
                   through=args.through, vdi=args.vdi, bypass=args.bypass)
    media_info(args.media_info, d)
    pol = load_policy(args.file, args.format, args.objects, args.mode, d)
    if args.show_translation and pol.format in ("csv", "yaml"):
        err.print(escape(pol.load_text))
    with err.status(f"checking {escape(args.file)} in lab '{escape(args.name)}'") as status:
        res = run_check(pol, d, lambda m: status.update(escape(m)), call=not args.no_call, fix=not args.no_fix,
                        name=args.name, out_dir=args.report_dir)
    if args.json:
        print(report.to_json(res))
    else:
        out.print(report.table(res))
        for line in report.extra_lines(res):
            out.print(escape(line))
        out.print(f"checked in {res.timings.get('total', 0):.1f} s" + (f": {escape(res.error)}" if res.error else ""))
    if args.junit:
        report.junit(res, args.junit)
        err.print(f"wrote {escape(args.junit)}")
    if args.report:
        Path(args.report).write_text(report.markdown(res))
        err.print(f"wrote {escape(args.report)}")
    if args.report_dir:
        where = report.write(res, args.report_dir)
        err.print(f"wrote {escape(str(where / 'report.html'))} (and report.md, result.json, the topology picture"
                  + (", the captures in pcap/)" if res.pcaps else ")"))
    if args.write_fixed:
        if res.fixed_text is None:
            err.print("no verified fix to write" + ("" if not res.passed else ": the policy passes as it is"))
        else:
            Path(args.write_fixed).write_text(res.fixed_text)
            err.print(f"wrote {escape(args.write_fixed)} (the fix verified)")
    if res.error:
        return EXIT_FAIL
    return EXIT_OK if res.passed else EXIT_FAIL
