"""A display-protocol channel, reduced to what matters for a call: the desktop's audio,
and the virtual channels a media-redirection plug-in uses.

A VDI display protocol (Citrix HDX, RDP, Blast, PCoIP) carries screen updates, input, the
desktop's sound and "virtual channels" for plug-ins over connections from the thin client to
the desktop's port. This program keeps what matters for a softphone. A thin client opens a
TCP connection to the desktop's port and says what it is for in one line:

* ``AUDIO``: the desktop sends one audio frame every 20 ms (what the softphone in the
  desktop plays); the thin client reads them and measures how late each one arrives.
* ``PLUGIN``: a media-redirection plug-in registers with the desktop; the desktop answers
  ``READY``. The softphone's VDI strategy waits for this before it places a call.
* ``CHANNEL HOST PORT``: a virtual channel for the softphone's signalling: the desktop opens
  a TCP connection to HOST:PORT from its own address, answers ``OK`` (or ``ERR reason``),
  then relays bytes both ways. On the wire the signalling WebSocket therefore leaves from
  the desktop, as with a real plug-in, where the CCP page in the desktop keeps the WebSocket
  and only the RTC engine runs on the thin client.

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


HELLO_TIMEOUT = 5.0        # a client that says nothing is dropped
CHANNEL_CONNECT_TIMEOUT = 15.0   # longer than the softphone's 10 s: its own timer decides


def _read_line(conn: socket.socket, limit: int = 200) -> str:
    buf = b""
    while not buf.endswith(b"\n"):
        chunk = conn.recv(1)
        if not chunk or len(buf) > limit:
            raise ConnectionError("no hello line")
        buf += chunk
    return buf.decode(errors="replace").strip()


def _pipe(src: socket.socket, dst: socket.socket) -> None:
    try:
        while True:
            data = src.recv(65536)
            if not data:
                break
            dst.sendall(data)
    except OSError:
        pass
    finally:
        for s, how in ((dst, socket.SHUT_WR), (src, socket.SHUT_RD)):
            try:
                s.shutdown(how)
            except OSError:
                pass


def _channel(conn: socket.socket, host: str, port: int) -> None:
    """A virtual channel: the desktop connects to host:port itself and relays."""
    try:
        far = socket.create_connection((host, port), timeout=CHANNEL_CONNECT_TIMEOUT)
    except OSError as exc:
        conn.sendall(f"ERR {exc}\n".encode())
        conn.close()
        return
    far.settimeout(None)
    for s in (conn, far):
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    conn.sendall(b"OK\n")
    t = threading.Thread(target=_pipe, args=(far, conn), daemon=True)
    t.start()
    _pipe(conn, far)
    t.join()
    far.close()
    conn.close()


def _handle(conn: socket.socket) -> None:
    try:
        conn.settimeout(HELLO_TIMEOUT)
        words = _read_line(conn).split()
        conn.settimeout(None)
    except (OSError, ConnectionError):
        conn.close()
        return
    if words == ["AUDIO"]:
        _send_frames(conn)
    elif words == ["PLUGIN"]:
        conn.sendall(b"READY\n")
        conn.close()
    elif len(words) == 3 and words[0] == "CHANNEL" and words[2].isdigit():
        _channel(conn, words[1], int(words[2]))
    else:
        conn.close()


def listener(port: int, host: str = "0.0.0.0") -> socket.socket:
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind((host, port))
    srv.listen(16)
    return srv


def serve_forever(srv: socket.socket) -> None:
    """Accept thin clients until the socket is closed; one thread per connection."""
    while True:
        try:
            conn, _ = srv.accept()
        except OSError:
            return
        threading.Thread(target=_handle, args=(conn,), daemon=True).start()


def serve(port: int) -> None:
    srv = listener(port)
    print(f"listening on {srv.getsockname()[1]}", flush=True)
    serve_forever(srv)


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
    conn.sendall(b"AUDIO\n")
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
