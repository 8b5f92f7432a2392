"""The probe's arguments, apart from the code that probes: ``icelab``'s parser defines every
command when it starts, and must not import the probe's measurements (websockets, Jinja2)
to do so."""

from __future__ import annotations

import argparse

from .platforms import OS_NAMES

EXAMPLES = """examples:
  icelab probe --media-info call-config.json
  icelab probe --turn turn.example.net:3478 --signalling wss://signalling.example.net/ --os windows
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--media-info", metavar="FILE",
                   help="the softphone's media info JSON (callConfigJson: iceServers with credentials, signalingEndpoint)")
    p.add_argument("--turn", action="append", default=[], metavar="HOST[:PORT]|URL",
                   help="a TURN server (UDP 3478 unless a turn:/turns: URL says otherwise); repeatable")
    p.add_argument("--signalling", metavar="URL", help="the signalling WebSocket (wss://HOST/PATH)")
    p.add_argument("--os", choices=OS_NAMES, default=None,
                   help="the agent OS whose ephemeral ports to send from (default: this machine's)")
    p.add_argument("--ip-ranges", metavar="FILE", help="an ip-ranges.json: are the endpoints in the Connect ranges?")
    p.add_argument("--region", help="the Connect instance's region (with --ip-ranges), e.g. us-east-1")
    p.add_argument("--ca", metavar="FILE", help="CA certificates to trust for TLS (default: the system's)")
    p.add_argument("--requests", type=int, default=4, metavar="N",
                   help="STUN requests from each source port (1-10, default 4)")
    p.add_argument("--idle", type=float, default=8.0, metavar="SECONDS",
                   help="the NAT-hold test's silence (needs TURN credentials): does data still come back after "
                        "SECONDS without a packet? 0 skips it; default 8 (the run stays under 15 s); "
                        "35 catches a 30 s NAT timeout; at most 240")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.add_argument("--report", metavar="FILE", help="write a report to attach to a ticket: FILE.md or FILE.html")
