"""A tiny STUN responder for tests that run the probe outside any lab: Binding requests get
their XOR-MAPPED-ADDRESS, anything else (an Allocate) a 401 with REALM and NONCE, as a TURN
server answers an unauthenticated request. ``python responder.py`` prints its port and
serves until killed (for a probe run as another user or from another interpreter)."""

from __future__ import annotations

import socket
import sys
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from lab.core import stun  # noqa: E402


def serve(s: socket.socket) -> None:
    while True:
        try:
            data, peer = s.recvfrom(2048)
            m = stun.parse(data)
        except OSError:
            return                   # closed
        except stun.ParseError:
            continue
        if m.method == stun.BINDING:
            s.sendto(stun.encode(stun.BINDING, stun.SUCCESS, m.tid,
                                 [(stun.XOR_MAPPED_ADDRESS, stun.xor_address(peer, m.tid))]), peer)
        else:
            s.sendto(stun.encode(m.method, stun.ERROR, m.tid, [(stun.ERROR_CODE, stun.error_code(401)),
                                                              (stun.REALM, b"r"), (stun.NONCE, b"n")]), peer)


def start(host: str = "127.0.0.1") -> socket.socket:
    """A bound socket served by a daemon thread; close it to stop."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((host, 0))
    threading.Thread(target=serve, args=(s,), daemon=True).start()
    return s


if __name__ == "__main__":
    sock = start()
    print(sock.getsockname()[1], flush=True)
    threading.Event().wait()
