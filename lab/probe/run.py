"""One probe run: resolve every endpoint, then measure everything at once under one
deadline, then judge (``signatures``). The result is a plain dict (``--json``), the
report's input and the scenario action's observation."""

from __future__ import annotations

import asyncio
import datetime
import platform
import time
from urllib.parse import urlsplit

from . import hold, measure, signatures
from .platforms import ephemeral_range, source_ports
from .targets import Ranges, Targets

#: the default run ends within 15 s even when everything is dropped: the relay waits 10 s
#: at most, every other wait less; this cuts whatever is left
RUN_DEADLINE = 13.0


async def measure_all(targets: Targets, os_name: str, ca: str | None = None, ranges: Ranges | None = None,
                      proxy: str | None = None, per_port: int = 4, idle: float = hold.DEFAULT_IDLE,
                      deadline: float | None = None) -> dict:
    t0 = time.monotonic()
    if deadline is None:
        # a longer silence than the default's moves the run's end with it
        deadline = max(RUN_DEADLINE, idle + RUN_DEADLINE - hold.DEFAULT_IDLE)
    pace = measure.Pace()
    names = list(await asyncio.gather(*(measure.resolve(h) for h in targets.hosts())))
    addr = {n["name"]: n["addresses"] for n in names}
    if ranges is not None:
        for n in names:
            n["in_connect_ranges"] = {a: ranges.contains(a) for a in n["addresses"]}
    jobs: dict[str, object] = {}
    # STUN to every UDP TURN address (two at most: enough to see a per-destination mapping)
    dests = list(dict.fromkeys((a, t.port) for t in targets.turn if t.transport == "udp" for a in addr.get(t.host, [])[:2]))[:2]
    ports = source_ports(os_name)
    # the stream and the NAT-hold test start once the sweep is done: their sockets must not
    # take a full NAT's last outside ports before the sweep's (peak-hour-small-pool)
    sweep = asyncio.ensure_future(measure.stun_sweep(dests, ports, per_port, pace)) if dests else None

    async def after_sweep(start):
        await asyncio.wait([sweep])
        return await start()

    if sweep:
        jobs["stun"] = sweep
        jobs["stream"] = after_sweep(lambda: measure.stun_stream(dests[0], pace))
    # the NAT-hold test needs an allocation: a UDP TURN URL with credentials
    creds = next((t for t in targets.turn if t.transport == "udp" and t.username and t.credential is not None
                  and addr.get(t.host)), None)
    if creds and idle > 0:
        def test():
            return hold.nat_hold(creds, addr[creds.host][0], pace, idle, t0 + deadline - 0.2)
        jobs["hold"] = after_sweep(test) if sweep else test()
    for i, t in enumerate(targets.turn):
        if addr.get(t.host):
            jobs[f"turn:{i}"] = measure.turn_check(t, addr[t.host][0], pace, ca)
    # TCP 443 to each TURN host (the documented port table's TCP 443 to the Connect ranges),
    # unless a TURN URL already goes there over TCP or TLS
    on443 = {t.host for t in targets.turn if t.transport in ("tcp", "tls") and t.port == 443}
    for host in dict.fromkeys(t.host for t in targets.turn):
        if host not in on443 and addr.get(host):
            jobs[f"tcp443:{host}"] = measure.tcp_connect(addr[host][0], 443, pace)
    if targets.signalling:
        host = urlsplit(targets.signalling).hostname
        if addr.get(host) or proxy:
            ip = (addr.get(host) or [host])[0]
            jobs["signalling"] = measure.signalling(targets.signalling, ip, pace, ca, proxy)
    tasks = {k: asyncio.ensure_future(v) for k, v in jobs.items()}
    left = max(0.1, deadline - (time.monotonic() - t0))
    done, pending = await asyncio.wait(tasks.values(), timeout=left)
    for task in pending:
        task.cancel()
    res = {k: (t.result() if t in done and not t.exception() else
               {"error": "cut at the run's deadline" if t in pending else f"failed: {t.exception()!r}"})
           for k, t in tasks.items()}
    lo, hi = ephemeral_range(os_name)
    out = {"os": os_name, "ephemeral_range": f"{lo}-{hi}", "source_ports": ports, "targets": {
               "source": targets.source, "turn": [t.url for t in targets.turn], "signalling": targets.signalling},
           "proxy": proxy, "names": names}
    if "stun" in res:
        sweep = res["stun"]
        out["stun"] = dict(measure.stun_summary(sweep), **sweep) if "ports" in sweep else sweep
    if "stream" in res:
        out["stream"] = dict(measure.stream_summary(res["stream"]), **res["stream"])
    if "hold" in res:
        out["hold"] = res["hold"]
    out["turn"] = [res[k] for k in res if k.startswith("turn:")]
    out["turn_tcp443"] = [dict(res[k], host=k.split(":", 1)[1]) for k in res if k.startswith("tcp443:")]
    if "signalling" in res:
        out["signalling"] = res["signalling"]
    out["packets_sent"] = pace.sent
    out["duration_s"] = round(time.monotonic() - t0, 2)
    return out


def probe(targets: Targets, os_name: str, **kw) -> dict:
    """Measure and judge: the measurements, the findings and the verdict."""
    started = datetime.datetime.now(datetime.timezone.utc)
    m = asyncio.run(measure_all(targets, os_name, **kw))
    found = signatures.findings(m)
    return {"verdict": signatures.verdict(found), "findings": [f.to_dict() for f in found],
            "measurements": m, "started": started.isoformat(timespec="seconds"),
            "machine": {"system": platform.system(), "release": platform.release(), "node": platform.node()}}
