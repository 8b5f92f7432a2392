"""Which of a NAT's resources ran out during a run, and when: from its conntrack statistics
(lab/net/natstat.py), one sentence for the report and for each failed call's diagnosis."""

from __future__ import annotations

from lab.net.natstat import COUNTERS


def exhausted(node: str, series: list, ports: tuple[int, int] | None) -> dict | None:
    """What ran out on ``node`` (its source-port pool or its connection table), from when,
    and how many new flows it refused; None when it refused nothing."""
    if len(series) < 2:
        return None
    first, last = series[0][1], series[-1][1]
    grew = {k: last.get(k, 0) - first.get(k, 0) for k in COUNTERS}
    if grew["insert_failed"] > 0:
        resource, key = "source-port pool", "insert_failed"
    elif grew["drop"] > 0 or grew["early_drop"] > 0:
        resource, key = "connection table", "drop" if grew["drop"] > 0 else "early_drop"
    else:
        return None
    i = next(i for i, (_, c) in enumerate(series) if c.get(key, 0) > first.get(key, 0))
    return {"node": node, "resource": resource, "from": series[i - 1][0], "at": series[i][0],
            "refused": grew[key], "counters": grew, "entries": last.get("entries"),
            "ports": list(ports) if ports else None}


def sentence(x: dict) -> str:
    """The report's words for what :func:`exhausted` found."""
    when = f"between {x['from']:.2f} s and {x['at']:.2f} s" if x["at"] - x["from"] > 0.15 else f"at {x['at']:.2f} s"
    c = x["counters"]
    if x["resource"] == "source-port pool":
        pool = (f" ({x['ports'][0]}-{x['ports'][1]}: {x['ports'][1] - x['ports'][0] + 1} outside ports)"
                if x["ports"] else "")
        return (f"{x['node']}'s NAT ran out of its source-port pool{pool} {when} of the timeline: from then on "
                f"{x['refused']} packets of new flows found no free outside port and were dropped "
                f"(conntrack insert_failed +{c['insert_failed']}, drop +{c['drop']})")
    return (f"{x['node']}'s connection table was full {when} of the timeline: {x['refused']} packets of new "
            f"connections were dropped untracked (conntrack drop +{c['drop']}, early_drop +{c['early_drop']}; "
            f"{x['entries']} entries tracked)")
