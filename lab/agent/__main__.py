"""``python -m lab.agent --config FILE``: place one softphone call, print the timeline as JSON
lines as it happens, then one ``{"outcome": ...}`` line. Exit 0 if the call was good, 1 if it
failed or its audio was silent, 2 if the configuration is wrong.

Config (JSON)::

    {"call": "calls/abc.json",          # or "callId" + "mediaInfo" inline
     "ca": "run/ca/ca.pem",             # the lab CA the agent trusts (wss:, turns:)
     "profile": "chrome",               # or "aiortc-default"
     "engine": "emulated",              # or "chromium": the real connect-rtc-js in headless Chromium
     "talk_time": 3.0, "media": true,
     "mdns": false,                     # host candidates as <uuid>.local (never sent: relay only)
     "gum_time": 0.0,                   # s until the microphone opens (GrabLocalMediaState); the pool gathers meanwhile
     "levels": 0.25,                    # s between {"level": ...} lines while talking (0/absent: none)
     "timers": {"ice": 8.0},            # optional overrides of lab.agent.constants.Timers
     "vdi": {"mode": "redirected", "desktop": "192.0.2.5", "port": 1494},   # optional (lab/agent/vdi.py)
     "persistent": {"calls": 2, "idle": 20}}  # optional: the CCP's persistent peer connection (lab/agent/persistent.py)
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import ssl
import sys
from pathlib import Path

from . import browser
from .call import CallOptions, place_call
from .constants import Timers
from .gather import PROFILES
from .persistent import PersistentOptions
from .timeline import render
from .vdi import VdiOptions
from lab.core.errors import LabError


ENGINES = ("emulated", "chromium")


class ConfigError(LabError):
    pass


def _seconds(path: str, doc: dict, key: str) -> float:
    v = doc.get(key, 0.0)
    if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0:
        raise ConfigError(f"{path}: {key}: must be a number of seconds >= 0, not {v!r}")
    return float(v)


def _persistent(path: str, doc: dict) -> PersistentOptions | None:
    if doc.get("persistent") is None:
        return None
    if not isinstance(doc["persistent"], dict):
        raise ConfigError(f"{path}: persistent: must be a mapping (calls, idle, settle), not {doc['persistent']!r}")
    try:
        return PersistentOptions.from_dict(doc["persistent"])
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{path}: {exc}")


def load(path: str) -> tuple[str, dict, ssl.SSLContext | None, CallOptions]:
    p = Path(path)
    try:
        doc = json.loads(p.read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path}: cannot read JSON: {exc}")
    if not isinstance(doc, dict):
        raise ConfigError(f"{path}: must be a JSON object")
    if "call" in doc:
        call_path = (p.parent / doc["call"]) if not Path(doc["call"]).is_absolute() else Path(doc["call"])
        try:
            call = json.loads(call_path.read_text())
        except (OSError, ValueError) as exc:
            raise ConfigError(f"{path}: call: cannot read {call_path}: {exc} "
                              "(hint: the cloud service writes it to its media_info_dir)")
    else:
        call = doc
    for key in ("callId", "mediaInfo"):
        if key not in call:
            raise ConfigError(f"{path}: {key}: missing (hint: give \"call\": FILE or both callId and mediaInfo)")
    profile = doc.get("profile", "chrome")
    if profile not in PROFILES:
        raise ConfigError(f"{path}: profile: must be one of {', '.join(PROFILES)}, not {profile!r}")
    fields = {f.name for f in dataclasses.fields(Timers)}
    timers = doc.get("timers", {})
    bad = set(timers) - fields
    if bad:
        raise ConfigError(f"{path}: timers.{sorted(bad)[0]}: unknown timer (known: {', '.join(sorted(fields))})")
    ctx, ca = None, None
    if doc.get("ca"):
        ca = Path(doc["ca"]) if Path(doc["ca"]).is_absolute() else p.parent / doc["ca"]
        try:
            ctx = ssl.create_default_context(cafile=str(ca))
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"{path}: ca: cannot load {ca}: {exc}")
    engine = doc.get("engine", "emulated")
    if engine not in ENGINES:
        raise ConfigError(f"{path}: engine: must be one of {', '.join(ENGINES)}, not {engine!r}")
    vdi = None
    if doc.get("vdi") is not None:
        try:
            vdi = VdiOptions.from_dict(doc["vdi"])
        except (ValueError, TypeError, AttributeError) as exc:
            raise ConfigError(f"{path}: {exc}")
    if vdi is not None and engine != "emulated":
        raise ConfigError(f"{path}: vdi: the VDI modes run the emulated softphone (engine: emulated)")
    if not isinstance(doc.get("mdns", False), bool):
        raise ConfigError(f"{path}: mdns: must be true or false, not {doc['mdns']!r}")
    opts = CallOptions(profile=profile, engine=engine, talk_time=float(doc.get("talk_time", 3.0)),
                       media=bool(doc.get("media", True)), mdns=doc.get("mdns", False),
                       gum_time=_seconds(path, doc, "gum_time"), levels=_seconds(path, doc, "levels"),
                       timers=Timers(**timers), vdi=vdi,
                       pki_dir=ca.parent if ca else None,
                       persistent=_persistent(path, doc))
    return call["callId"], call["mediaInfo"], ctx, opts


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m lab.agent", description="place one emulated softphone call")
    ap.add_argument("--config", required=True)
    ap.add_argument("--text", action="store_true", help="a human-readable timeline instead of JSON lines")
    ap.add_argument("--wait", action="store_true", help=(
        "start (imports done), print {\"ready\": true}, then wait for a line on stdin before reading the "
        "config and calling: a scenario starts its softphones while the lab's services start"))
    args = ap.parse_args(argv)
    if args.wait:
        print(json.dumps({"ready": True}), flush=True)
        if not sys.stdin.readline():
            return 2        # the runner went away before the call's time
    try:
        call_id, info, ctx, opts = load(args.config)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if opts.engine == "chromium":
        try:
            summary = browser.place_call(call_id, info, pki_dir=opts.pki_dir, talk_time=opts.talk_time,
                                         levels=opts.levels,
                                         persistent=opts.persistent.as_dict() if opts.persistent else None,
                                         stream=None if args.text else sys.stdout)
        except browser.BrowserError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    else:
        outcome = asyncio.run(place_call(call_id, info, ssl=ctx, options=opts,
                                         stream=None if args.text else sys.stdout))
        summary = outcome.as_dict()
    timeline = summary.pop("timeline")
    if args.text:
        print(render(timeline))
        verdict = "ok" if summary["ok"] else (summary["softphone_error"] or summary["rtc_error"] or "silent audio")
        print(f"outcome: {summary['state']} ({verdict})")
    else:
        print(json.dumps({"outcome": summary}), flush=True)
    return 0 if summary["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
