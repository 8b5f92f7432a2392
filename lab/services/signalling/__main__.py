"""``python -m lab.services.signalling --config FILE``: the signalling mock alone, answering
every invite with a fixed description (for signalling-only scenarios: handshake timing,
403/404/486). For calls with media run ``python -m lab.services.media``, which includes it.

Config (JSON): ``{"listen": "127.0.0.1", "port": 443, "ca_dir": DIR, "server_name": NAME,
"server_ips": [...], "calls": {"<callId>": {"contact_ctx": TOKEN, "behaviour": "answer",
"answer_delay": 0}}, "answer": {"sdp": SDP, "candidates": [...]}}``."""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
from pathlib import Path

from lab.services.pki import LabCA

from .server import CallPlan, SignallingServer, static_answerer

DEFAULT_ANSWER = {
    "sdp": "v=0\r\no=AmazonConnect 1 2 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111 126\r\n"
           "c=IN IP4 0.0.0.0\r\na=rtpmap:111 opus/48000/2\r\na=fmtp:111 minptime=10;useinbandfec=1\r\n"
           "a=rtpmap:126 telephone-event/8000\r\na=silenceSupp:off - - - -\r\n",
    "candidates": [{"candidate": "candidate:1 1 udp 16777215 192.0.2.1 50000 typ relay raddr 0.0.0.0 rport 0",
                    "sdpMid": "0", "sdpMLineIndex": 0}],
}


async def serve(doc: dict) -> None:
    ca = LabCA.load_or_create(doc["ca_dir"])
    name = doc.get("server_name", "localhost")
    issued = ca.issue("signalling", dns=[name], ips=doc.get("server_ips", ["127.0.0.1"]))
    answer = doc.get("answer", DEFAULT_ANSWER)
    srv = SignallingServer(answerer=static_answerer(answer["sdp"], answer["candidates"]), ssl=issued.server_context())
    for call_id, plan in doc.get("calls", {}).items():
        srv.add_call(call_id, CallPlan(**plan))
    _, port = await srv.start(doc.get("listen", "127.0.0.1"), int(doc.get("port", 443)))
    print(json.dumps({"service": "signalling", "event": "ready", "endpoint": f"wss://{name}:{port}/LilyRTC",
                      "port": port, "ca": str(ca.cert_path)}), flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await srv.close()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m lab.services.signalling")
    ap.add_argument("--config", required=True)
    args = ap.parse_args(argv)
    try:
        doc = json.loads(Path(args.config).read_text())
        if "ca_dir" not in doc:
            raise ValueError("ca_dir: missing (hint: the lab's run directory for its CA)")
        for call_id, plan in doc.get("calls", {}).items():
            CallPlan(**plan)
    except (OSError, ValueError, TypeError) as exc:
        print(f"error: {args.config}: {exc}", file=sys.stderr)
        return 2
    asyncio.run(serve(doc))
    return 0


if __name__ == "__main__":
    sys.exit(main())
