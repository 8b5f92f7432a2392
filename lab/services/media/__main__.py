"""``python -m lab.services.media --config FILE``: the lab's cloud (signalling mock on wss and
the media edge) until SIGTERM. Logs JSON lines; the first is ``{"event": "ready", ...}``.
The configuration is :class:`lab.services.media.cloud.CloudConfig` as JSON."""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys

from .cloud import CloudConfig, ConnectCloud


async def serve(cfg: CloudConfig) -> None:
    cloud = ConnectCloud(cfg)
    await cloud.start()
    print(json.dumps({"service": "media", "event": "ready", "endpoint": cloud.endpoint, "port": cloud.port,
                      "ca": str(cloud.ca.cert_path), "calls": sorted(cfg.calls)}), flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await cloud.close()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m lab.services.media")
    ap.add_argument("--config", required=True)
    args = ap.parse_args(argv)
    try:
        cfg = CloudConfig.from_json(args.config)
    except (OSError, ValueError) as exc:
        print(f"error: {exc} (hint: see lab/services/media/cloud.py CloudConfig)", file=sys.stderr)
        return 2
    asyncio.run(serve(cfg))
    return 0


if __name__ == "__main__":
    sys.exit(main())
