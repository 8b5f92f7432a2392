"""A call placed by the real thing: headless Chromium running Amazon's connect-rtc-js.

The emulated softphone (``lab.agent.session``) reproduces the library's state machine and
Chrome's ICE timing in Python. This engine runs the original instead, in the agent's network
namespace: Chromium (Debian package ``chromium``, optional) loads a page with the library's
released build (``web/connect-rtc-js``, Apache-2.0, vendored unchanged) and the harness
``web/harness.js``, which places the call exactly as amazon-connect-streams does with the
softphone media info the lab's cloud issued. The harness logs every state change,
candidate, error and the audio statistics to the console; this module reads Chromium's log,
turns the lines into the same JSON-lines timeline and ``{"outcome": ...}`` the emulated
softphone prints, and ends Chromium.

Its use: to check the lab against the real library and browser (same errors, same moments),
and to show a class the real softphone failing, not a model of it. Chromium is started with
the flags that keep it quiet on the network (no component updates, no safe browsing, no
background requests), so that its only traffic is the call's: the lab's captures and firewall
counters must not see a browser's chatter. It trusts the lab's certificates by their public
keys (``--ignore-certificate-errors-spki-list``), the closest a throwaway profile gets to
installing the lab CA.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import threading
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from . import voice
from .errors import softphone_error_type
from lab.core.errors import LabError

WEB = Path(__file__).resolve().parent / "web"
LIBRARY = WEB / "connect-rtc-js" / "connect-rtc.min.js"
HARNESS = WEB / "harness.js"
#: what to do about the browser's own network use: none of it may leave the lab's nodes
QUIET_FLAGS = [
    "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run", "--no-default-browser-check",
    "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
    "--disable-background-networking", "--disable-component-update", "--disable-domain-reliability",
    "--disable-client-side-phishing-detection", "--disable-sync", "--disable-default-apps",
    "--disable-breakpad", "--no-pings", "--metrics-recording-only", "--disable-extensions",
    "--disable-features=MediaRouter,OptimizationHints,Translate,DialMediaRouteProvider,AutofillServerCommunication",
    "--autoplay-policy=no-user-gesture-required", "--enable-logging=stderr", "--v=0",
    "--dns-prefetch-disable",
    # libwebrtc's TURN port logs why an allocation failed (issue 14 item 5): the page is never
    # told when the pooled session's port fails (no icecandidateerror), the log is
    "--vmodule=*turn_port*=1",
]


def resolver_rules(media_info: dict[str, Any]) -> str:
    """A lab has no DNS (everything is by address): no name leaves the browser to be
    resolved, so no query to the host's resolver shows up in the lab's captures and drop
    counters. The rule maps every name to 'not found' except the call's own hosts (the
    rules apply to address literals too)."""
    cfg = json.loads(media_info["callConfigJson"])
    hosts = {urlsplit(cfg["signalingEndpoint"]).hostname}
    for server in cfg.get("iceServers", []):
        for url in [server["urls"]] if isinstance(server["urls"], str) else server["urls"]:
            hosts.add(url.split(":", 1)[1].split("?", 1)[0].rsplit(":", 1)[0].strip("[]"))
    return "MAP * ~NOTFOUND" + "".join(f", EXCLUDE {h}" for h in sorted(h for h in hosts if h))
MARK = "ICELAB "


class BrowserError(LabError):
    pass


def chromium() -> str | None:
    """The Chromium binary, or None (the browser engine is optional: `sudo make setup` installs it)."""
    return shutil.which("chromium") or shutil.which("chromium-browser")


def spki_hashes(pki_dir: Path) -> list[str]:
    """Base64 SHA-256 of the public key of every certificate the lab CA issued, for
    ``--ignore-certificate-errors-spki-list``."""
    out = []
    for pem in sorted(pki_dir.glob("*.pem")):
        if pem.name == "ca.pem":
            continue
        try:
            cert = x509.load_pem_x509_certificate(pem.read_bytes())
        except ValueError:
            continue
        spki = cert.public_key().public_bytes(serialization.Encoding.DER,
                                              serialization.PublicFormat.SubjectPublicKeyInfo)
        out.append(base64.b64encode(hashlib.sha256(spki).digest()).decode())
    return out


def write_page(workdir: Path, call_id: str, media_info: dict[str, Any], talk_time: float,
               levels: float = 0.0, persistent: dict[str, Any] | None = None) -> Path:
    config = {"callId": call_id, "mediaInfo": media_info, "talkTime": talk_time, "levels": levels,
              "persistent": persistent}
    page = workdir / "index.html"
    page.write_text(f"""<!doctype html>
<html><head><meta charset="utf-8"><title>icelab softphone (connect-rtc-js)</title></head>
<body><audio id="remote-audio" autoplay></audio>
<script>window.ICELAB_CONFIG = {json.dumps(config)};</script>
<script src="{LIBRARY.as_uri()}"></script>
<script src="{HARNESS.as_uri()}"></script>
</body></html>
""")
    return page


_LOG_TIME = re.compile(r"^\[\d+:\d+:\d{4}/(\d\d)(\d\d)(\d\d\.\d+):")
_TURN = re.compile(r"turn_port\.cc:\d+\] .*?: (TURN allocate request sent|Received TURN allocate error response"
                   r"|TURN allocate request \w+ timeout)(?:, id=\w+)?(?:, code=(\d+))?(?:, rtt=[^,]+)?"
                   r"(?:, reason='([^']*)')?")


# TurnPort::OnAllocateMismatch's last word (LS_WARNING), then OnAllocateError(437)
_MISMATCH = re.compile(r"turn_port\.cc:\d+\] .*?: Giving up on the port after (\d+) retries for "
                       r"STUN_ERROR_ALLOCATION_MISMATCH")


def _log_time(line: str) -> float | None:
    """Seconds of the day from a Chromium log line's prefix ``[pid:tid:MMDD/HHMMSS.micro:``."""
    m = _LOG_TIME.match(line)
    return None if m is None else int(m[1]) * 3600 + int(m[2]) * 60 + float(m[3])


def _webrtc_event(line: str) -> dict | None:
    """An event from libwebrtc's own TURN log (turn_port.cc): what the browser does not tell
    the page. A sent Allocate, each error answer, and the one that ends the port (logged
    again as a warning, with the reason: ``TurnAllocateRequest::OnErrorResponse`` default
    branch -> ``OnAllocateError``) as ``url_failed``, as the emulation names it."""
    m = _TURN.search(line)
    if m is None:
        g = _MISMATCH.search(line)
        return None if g is None else {"kind": "ice", "name": "url_failed", "code": 437, "source": "turn_port.cc",
                                       "reason": f"Maximum retries reached for allocation mismatch ({g[1]} retries)"}
    what, code, reason = m[1], m[2], m[3]
    if what == "TURN allocate request sent":
        return {"kind": "stun", "name": "send ALLOCATE", "source": "turn_port.cc"}
    if what.endswith("timeout"):
        return {"kind": "ice", "name": "url_failed", "reason": "allocate timeout", "source": "turn_port.cc"}
    if reason is not None:
        return {"kind": "ice", "name": "url_failed", "code": int(code), "reason": reason, "source": "turn_port.cc"}
    return {"kind": "stun", "name": "ALLOCATE error", "code": int(code) if code else None, "source": "turn_port.cc"}


def _parse(line: str) -> dict | None:
    """An event from a Chromium log line: ``[...:INFO:CONSOLE:N] "ICELAB {...}", source: ...``."""
    i = line.find('"' + MARK)
    if i < 0:
        return None
    j = line.rfind('", source:')
    raw = line[i + 1 + len(MARK): j if j > i else None]
    try:
        return json.loads(raw)
    except ValueError:
        return None


def outcome_of(events: list[dict], done: dict | None) -> dict[str, Any]:
    """The same outcome the emulated softphone reports, from the browser's events."""
    states = [e["name"] for e in events if e["kind"] == "state"]
    rtc_error = (done or {}).get("rtc_error") or next((e["name"] for e in events if e["kind"] == "error"), None)
    quality = (done or {}).get("quality") or {}
    reached = "TalkingState" in states
    ok = done is not None and rtc_error is None and reached and not quality.get("silent_audio")
    return {"state": states[-1] if states else None, "ok": ok, "rtc_error": rtc_error,
            "softphone_error": softphone_error_type(rtc_error) if rtc_error else None,
            "detail": "" if done is not None else "the browser gave no outcome before the deadline",
            "reached_talking": reached,
            "local_candidates": sum(1 for e in events if e["kind"] == "candidate"),
            "remote_candidates": None, "quality": quality, "engine": "chromium",
            "user_agent": next((e.get("user_agent") for e in events if e["name"] == "connect"), None)}


def place_call(call_id: str, media_info: dict[str, Any], *, pki_dir: Path | None, talk_time: float = 3.0,
               stream: TextIO | None = None, deadline: float = 60.0, levels: float = 0.0,
               persistent: dict[str, Any] | None = None) -> dict[str, Any]:
    """Run Chromium in this process's network namespace until the call ends; return the
    outcome (with its timeline) and stream the events as JSON lines as they come. With
    ``levels``, the page polls getStats' audioLevel that often while talking: ``{"level": ...}``
    lines on the stream, as the emulated softphone's (lab/agent/levels.py), not events."""
    exe = chromium()
    if exe is None:
        raise BrowserError("Chromium is not installed (hint: 'sudo make setup' installs the Debian package chromium)")
    with tempfile.TemporaryDirectory(prefix="icelab-chromium-") as tmp:
        work = Path(tmp)
        page = write_page(work, call_id, media_info, talk_time, levels, persistent)
        if persistent:      # the calls and the idle times between them come on top
            deadline += persistent["calls"] * (talk_time + 10.0) + (persistent["calls"] - 1) * persistent["idle"]
        # the fake microphone speaks (lab/agent/voice.py): Chrome's default beeps are taken
        # for noise and suppressed within seconds
        argv = [exe, *QUIET_FLAGS, f"--user-data-dir={work / 'profile'}",
                f"--use-file-for-fake-audio-capture={voice.write_wav(work / 'voice.wav')}",
                f"--host-resolver-rules={resolver_rules(media_info)}"]
        hashes = spki_hashes(pki_dir) if pki_dir else []
        if hashes:
            argv.append("--ignore-certificate-errors-spki-list=" + ",".join(hashes))
        argv.append(page.as_uri())
        env = dict(os.environ, HOME=str(work))      # no user's profile, keyring or NSS db
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                errors="replace", env=env, start_new_session=True)
        events: list[dict] = []
        done: dict | None = None
        finished = threading.Event()

        def add(ev: dict) -> None:
            if ev.get("kind") == "level":
                if stream is not None:
                    stream.write(json.dumps({"level": {"t": round(float(ev.get("t", 0.0)), 4),
                                                       **{k: ev.get(k) for k in ("out", "in", "out_dbfs", "in_dbfs")}}})
                                 + "\n")
                    stream.flush()
                return
            ev = {"t": round(float(ev.pop("t", 0.0)), 4), "kind": ev.pop("kind", "info"),
                  "name": ev.pop("name", ""), **ev}
            if ev["kind"] == "error":
                ev["softphone_error"] = softphone_error_type(ev["name"])
                # the state it failed in (whose timer fired), as the emulated softphone reports it
                ev["state"] = next((e["name"] for e in reversed(events)
                                    if e["kind"] == "state" and e["name"] != "FailedState"), None)
            events.append(ev)
            if stream is not None:
                stream.write(json.dumps(ev) + "\n")
                stream.flush()

        def read() -> None:
            nonlocal done
            offset = None       # the log's clock minus the page's, from the first console line
            early: list[tuple[float, dict]] = []
            for line in proc.stderr:
                ev = _parse(line)
                if ev is None:
                    raw, lt = _webrtc_event(line), _log_time(line)
                    if raw is None or lt is None:
                        continue
                    if offset is None:
                        early.append((lt, raw))     # before the page's first line: placed then
                        continue
                    ev = {**raw, "t": lt - offset}
                elif offset is None and "t" in ev and _log_time(line) is not None:
                    offset = _log_time(line) - float(ev["t"])
                    for lt, raw in early:
                        add({**raw, "t": lt - offset})
                    early.clear()
                if ev.get("kind") == "done":
                    done = ev.get("outcome") or {}
                    finished.set()
                    continue
                add(ev)
            finished.set()

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        try:
            finished.wait(deadline + talk_time)
        finally:
            _stop(proc)
            reader.join(5)
    out = outcome_of(events, done)
    out["timeline"] = events
    return out


def _stop(proc: subprocess.Popen) -> None:
    """End Chromium and its helper processes (they share its session)."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(3)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait()
    # helpers that outlived their parent (zygote, GPU, network service) share its group
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
