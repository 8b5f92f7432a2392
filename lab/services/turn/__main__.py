"""``python -m lab.services.turn --config FILE``: run the TURN service (either backend)."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from pathlib import Path

from . import coturn
from .config import TurnConfig
from .transports import Service


async def serve(cfg: TurnConfig, ready=None) -> None:
    """The embedded server on its ports and, when ``cfg.control`` is set, its control channel."""
    svc = Service(cfg)
    await svc.start()
    if ready is not None:
        ready(svc)
    await asyncio.Event().wait()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m lab.services.turn", description=__doc__)
    ap.add_argument("--config", required=True, help="the service's JSON config (lab.services.turn.config)")
    args = ap.parse_args(argv)
    try:
        cfg = TurnConfig.load(args.config)
    except (OSError, ValueError) as exc:
        print(f"turn: bad config {args.config}: {exc}", file=sys.stderr)
        return 2
    if cfg.backend == "coturn":
        work = Path(args.config).with_suffix("")
        work.mkdir(parents=True, exist_ok=True)
        conf = work / "turnserver.conf"
        conf.write_text(coturn.render(cfg, work))
        sys.stdout.flush()
        os.execvp("turnserver", coturn.command(conf))   # the process becomes coturn: same pid, same mark
    if cfg.control:         # control sockets of workers an earlier run had and this one has not
        i = max(cfg.workers, 1)
        while os.path.exists(f"{cfg.control}.{i}"):
            os.unlink(f"{cfg.control}.{i}")
            i += 1
    if cfg.workers > 1:
        return _workers(cfg)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))

    def ready(svc):
        print(f"turn: embedded server ready on {cfg.addresses} (udp {cfg.udp_port}, tcp {cfg.tcp_port}, "
              f"tls {cfg.tls_port})", flush=True)
    try:
        asyncio.run(serve(cfg, ready))
    except KeyboardInterrupt:
        pass
    return 0


def _workers(cfg: TurnConfig) -> int:
    """``workers`` processes on the same ports (SO_REUSEPORT), each with its own slice of
    relay ports; this process waits and passes SIGTERM on."""
    pids = []
    for i in range(cfg.workers):
        pid = os.fork()
        if pid == 0:
            wcfg = cfg.for_worker(i)
            signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
            try:
                asyncio.run(serve(wcfg, lambda svc: print(f"turn: worker {i} ready (relay ports "
                                                          f"{wcfg.min_port}-{wcfg.max_port})", flush=True)))
            finally:
                os._exit(0)
        pids.append(pid)

    def stop(*_):
        for p in pids:
            try:
                os.kill(p, signal.SIGTERM)
            except ProcessLookupError:
                pass
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    for p in pids:
        while True:
            try:
                os.waitpid(p, 0)
                break
            except InterruptedError:
                continue
            except ChildProcessError:
                break
    return 0


if __name__ == "__main__":
    sys.exit(main())
