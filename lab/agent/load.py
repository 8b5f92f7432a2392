"""``python -m lab.agent.load --config FILE``: many softphone calls from many agent hosts in
one process and one asyncio loop (a load run: a scenario's ``call`` step with ``count``).

Why one process: a softphone process costs about 0.6 s of CPU to start (Python, aiortc) and
some 40 MB; two hundred of them would cost more than the calls. Each agent host is a network
namespace, so each call's sockets must be made in its host's namespace: a call runs in a task
whose context names the namespace, and :class:`NamespacedSocket` (installed as
``socket.socket`` in this process only) enters it for the moment a socket is created. A
socket keeps the namespace it was made in, so nothing else in the call needs to know.
Addresses in a call's media info are IP literals, so no name is resolved (in a resolver
thread, outside the call's namespace).

Config (JSON)::

    {"ca": "run/pki/ca.pem", "talk_time": 5.0, "media": "light",     # or "full"
     "calls": [{"name": "floor1-1", "call": "calls/floor1-1.json",   # media info as the cloud wrote it
                "netns": 12345,                                     # a pid in the agent host's namespace
                "at": 0.1}, ...]}                                   # s after 'go'

It prints ``{"ready": true}``, waits for a line on stdin, reads the config, places every call at its time, and
prints one ``{"call": NAME, "t0": S, "outcome": {...}}`` line per call as it ends (``t0``: when
the call began, in s after 'go'; the outcome as ``python -m lab.agent`` prints it), then
``{"done": true, "cpu_s": ..., "wall_s": ...}``. Exit 0 once every call has reported.
"""

from __future__ import annotations

import argparse
import asyncio
import contextvars
import ctypes
import json
import os
import socket
import ssl
import sys
import time
from pathlib import Path
from typing import Any

from lab.core.audio import AGENT_TONE, CALLER_TONE, HOLD_TONE
from lab.core.errors import LabError
from lab.core.lightaudio import encoded_tone

from .call import CallOptions, place_call
from .lightmedia import place_light_call

CLONE_NEWNET = 0x40000000
_NETNS: contextvars.ContextVar[int | None] = contextvars.ContextVar("netns", default=None)
_libc = ctypes.CDLL(None, use_errno=True)
_Socket = socket.socket


class ConfigError(LabError):
    pass


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns: {os.strerror(err)}")


class NamespacedSocket(_Socket):
    """``socket.socket`` made in the namespace the current context names (a new socket only:
    one made from a descriptor is where that descriptor is)."""

    home: int | None = None

    def __init__(self, family: int = -1, type: int = -1, proto: int = -1, fileno: int | None = None):
        ns = _NETNS.get()
        if ns is None or fileno is not None:
            super().__init__(family, type, proto, fileno)
            return
        _setns(ns)
        try:
            super().__init__(family, type, proto, fileno)
        finally:
            _setns(self.home)


def install() -> None:
    NamespacedSocket.home = os.open("/proc/self/ns/net", os.O_RDONLY)
    socket.socket = NamespacedSocket


def load(path: str) -> tuple[list[dict[str, Any]], ssl.SSLContext | None, CallOptions, str]:
    p = Path(path)
    try:
        doc = json.loads(p.read_text())
        calls = doc["calls"]
        for c in calls:
            c["info"] = json.loads(Path(c["call"]).read_text())
            c["fd"] = os.open(f"/proc/{int(c['netns'])}/ns/net", os.O_RDONLY)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"{path}: {type(exc).__name__}: {exc}") from None
    media = doc.get("media", "light")
    if media not in ("light", "full"):
        raise ConfigError(f"{path}: media: must be light or full, not {media!r}")
    ctx = ssl.create_default_context(cafile=doc["ca"]) if doc.get("ca") else None
    opts = CallOptions(talk_time=float(doc.get("talk_time", 3.0)), profile=doc.get("profile", "chrome"),
                       mdns=bool(doc.get("mdns", False)))
    return calls, ctx, opts, media


async def run(calls: list[dict[str, Any]], ctx: ssl.SSLContext | None, opts: CallOptions, media: str) -> None:
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    place = place_light_call if media == "light" else place_call

    async def one(c: dict[str, Any]) -> None:
        await asyncio.sleep(max(0.0, t0 + float(c.get("at", 0.0)) - loop.time()))
        start = loop.time() - t0
        _NETNS.set(c["fd"])
        try:
            out = (await place(c["info"]["callId"], c["info"]["mediaInfo"], ssl=ctx, options=opts)).as_dict()
        except Exception as exc:  # noqa: BLE001 - one call's crash is that call's outcome, not the run's
            out = {"state": "crashed", "ok": False, "rtc_error": None, "softphone_error": None,
                   "detail": f"{type(exc).__name__}: {exc}", "reached_talking": False, "quality": {},
                   "timeline": []}
        print(json.dumps({"call": c["name"], "t0": round(start, 4), "outcome": out}, default=str), flush=True)

    # each call in its own context: the namespace it sets is its own and its tasks'
    await asyncio.gather(*(loop.create_task(one(c), context=contextvars.copy_context()) for c in calls))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m lab.agent.load", description="many calls from many agent hosts")
    ap.add_argument("--config", required=True)
    ap.add_argument("--now", action="store_true", help="do not wait for a line on stdin")
    args = ap.parse_args(argv)
    install()
    # the tones are encoded before 'go' (about 0.3 s each), not in the first call's time
    for f in (AGENT_TONE, CALLER_TONE, HOLD_TONE):
        encoded_tone(f)
    print(json.dumps({"ready": True}), flush=True)
    if not args.now and not sys.stdin.readline():
        return 2
    # read at 'go': the calls' media info is written when the lab's cloud starts, after this process
    try:
        calls, ctx, opts, media = load(args.config)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    cpu0, w0 = time.process_time(), time.monotonic()
    asyncio.run(run(calls, ctx, opts, media))
    print(json.dumps({"done": True, "cpu_s": round(time.process_time() - cpu0, 3),
                      "wall_s": round(time.monotonic() - w0, 3)}), flush=True)
    return 0


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    # every call has reported: leave now. aiortc's decoder threads are not daemons, and one whose
    # receiver was never stopped (a call cut short in its set-up) would keep the interpreter
    # waiting at exit for ever (seen with 40 full-path calls in one process)
    os._exit(code)
