"""A display-protocol channel, reduced to what matters for a call: the desktop's audio.

A VDI display protocol (Citrix HDX, RDP, Blast, PCoIP) carries screen updates, input and
the desktop's sound over one long-lived connection. This program keeps the sound only: the
desktop sends one audio frame every 20 ms (what the softphone in the desktop plays) over a
TCP connection; the thin client reads them and measures how late each one arrives.

    python -m lab.net.display serve PORT                 # on the virtual desktop
    python -m lab.net.display listen ADDRESS PORT SECONDS  # on the thin client: prints JSON

Both ends run on the same machine (in different namespaces) and CLOCK_MONOTONIC is shared
by all namespaces, so the one-way delay is measured directly. Jitter is the RFC 3550
interarrival jitter (section 6.4.1, "Interarrival jitter"), in milliseconds.
"""

from __future__ import annotations

import json
import socket
import statistics
import struct
import sys
import threading
import time

FRAME_MS = 20
PAYLOAD = 160            # bytes of audio per frame: 64 kbit/s, like G.711 or a generous Opus
HEADER = struct.Struct("!Id")        # sequence number, send time (monotonic seconds)
FRAME = HEADER.size + PAYLOAD


def _send_frames(conn: socket.socket) -> None:
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)   # audio is not batched
    seq = 0
    start = time.monotonic()
    try:
        while True:
            conn.sendall(HEADER.pack(seq, time.monotonic()) + bytes(PAYLOAD))
            seq += 1
            delay = start + seq * FRAME_MS / 1000 - time.monotonic()
            if delay > 0:
                time.sleep(delay)
    except OSError:
        pass
    finally:
        conn.close()


def serve(port: int) -> None:
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("0.0.0.0", port))
    srv.listen(16)
    print(f"listening on {port}", flush=True)
    while True:
        conn, _ = srv.accept()
        threading.Thread(target=_send_frames, args=(conn,), daemon=True).start()


def _recv_exact(conn: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = conn.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("the desktop closed the display channel")
        buf += chunk
    return buf


def listen(address: str, port: int, seconds: float) -> dict:
    """Read frames for ``seconds``; one-way delay and jitter of the desktop's audio."""
    t0 = time.monotonic()
    conn = socket.create_connection((address, port), timeout=5)
    connect_ms = (time.monotonic() - t0) * 1000
    delays: list[float] = []
    jitter = 0.0
    last_seq = -1
    gaps = 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        seq, sent = HEADER.unpack(_recv_exact(conn, FRAME)[:HEADER.size])
        transit = (time.monotonic() - sent) * 1000
        if delays:
            jitter += (abs(transit - delays[-1]) - jitter) / 16
        if last_seq >= 0 and seq != last_seq + 1:
            gaps += 1
        last_seq = seq
        delays.append(transit)
    conn.close()
    delays_sorted = sorted(delays)
    return {"frames": len(delays), "frame_ms": FRAME_MS, "connect_ms": round(connect_ms, 3),
            "delay_ms_mean": round(statistics.fmean(delays), 3) if delays else None,
            "delay_ms_p95": round(delays_sorted[int(0.95 * (len(delays) - 1))], 3) if delays else None,
            "delay_ms_max": round(delays_sorted[-1], 3) if delays else None,
            "jitter_ms": round(jitter, 3), "sequence_gaps": gaps}


def main(argv: list[str]) -> int:
    if len(argv) == 2 and argv[0] == "serve":
        serve(int(argv[1]))
        return 0
    if len(argv) == 4 and argv[0] == "listen":
        print(json.dumps(listen(argv[1], int(argv[2]), float(argv[3]))))
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
