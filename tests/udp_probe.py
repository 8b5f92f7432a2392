"""The tests' and benchmarks' UDP tool: run inside lab nodes (``python tests/udp_probe.py``).

Not the lab's probe (``lab/net/probe.py``, what scenarios run): this one measures links
(tests/net/test_shaping.py, bench/shaper.py) and is the TURN relay's peer in tests.
All of a lab's namespaces share the host's clock, so one-way delays are measured exactly:
every datagram carries its sequence number and CLOCK_MONOTONIC send time, the receiver
notes its own time.

- ``reflect IP PORT``: send every datagram back unchanged (the relay's peer in TURN tests).
- ``echo PORT``: answer each datagram with it and the time it arrived.
- ``sink PORT --idle S``: receive until nothing came for S seconds; print JSON
  ``{"recv": [[seq, sent, received, size], ...]}``.
- ``send HOST PORT --count N --rate PPS [--size B] [--echo]``: send; with ``--echo``
  collect the answers and print ``{"sent": N, "echo": [[seq, sent, at_server, back], ...]}``.
"""

from __future__ import annotations

import argparse
import json
import os
import select
import socket
import struct
import sys
import time

HEAD = struct.Struct("!Id")                 # sequence number, send time
ECHO = struct.Struct("!Idd")                # sequence number, send time, time at the echo


def reflect(address: str, port: int) -> None:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((address, port))
    print("ready", flush=True)
    while True:
        data, peer = s.recvfrom(65536)
        s.sendto(data, peer)


def echo(port: int) -> None:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("0.0.0.0", port))
    print("ready", flush=True)
    while True:
        data, peer = s.recvfrom(65535)
        now = time.monotonic()
        seq, sent = HEAD.unpack_from(data)
        s.sendto(ECHO.pack(seq, sent, now) + data[ECHO.size:], peer)


def sink(port: int, idle: float, first_wait: float) -> None:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
    s.bind(("0.0.0.0", port))
    print("ready", flush=True)
    out = []
    wait = first_wait
    buf = bytearray(65535)
    while True:
        r, _, _ = select.select([s], [], [], wait)
        if not r:
            break
        n = s.recv_into(buf)
        now = time.monotonic()
        seq, sent = HEAD.unpack_from(buf)
        out.append((seq, sent, now, n))
        wait = idle
    print(json.dumps({"recv": out}), flush=True)


def send(host: str, port: int, count: int, rate: float, size: int, want_echo: bool, wait: float) -> None:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 8 << 20)
    s.connect((host, port))
    pad = b"\0" * max(0, size - HEAD.size)
    echoes = []
    interval = 1.0 / rate
    start = time.monotonic() + 0.01
    buf = bytearray(65535)

    def drain(timeout: float) -> None:
        while True:
            r, _, _ = select.select([s], [], [], timeout)
            if not r:
                return
            n = s.recv_into(buf)
            now = time.monotonic()
            seq, sent, there = ECHO.unpack_from(buf)
            echoes.append((seq, sent, there, now))
            timeout = 0

    for i in range(count):
        due = start + i * interval
        while True:
            now = time.monotonic()
            if now >= due:
                break
            if want_echo:
                drain(due - now)
            else:
                time.sleep(due - now)
        s.send(HEAD.pack(i, time.monotonic()) + pad)
    if want_echo:
        end = time.monotonic() + wait
        while time.monotonic() < end and len(echoes) < count:
            drain(max(0.0, end - time.monotonic()))
    print(json.dumps({"sent": count, "seconds": time.monotonic() - start, "echo": echoes}), flush=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="udp_probe.py")
    sub = p.add_subparsers(dest="mode", required=True)
    r = sub.add_parser("reflect")
    r.add_argument("address")
    r.add_argument("port", type=int)
    e = sub.add_parser("echo")
    e.add_argument("port", type=int)
    k = sub.add_parser("sink")
    k.add_argument("port", type=int)
    k.add_argument("--idle", type=float, default=1.0)
    k.add_argument("--first-wait", type=float, default=10.0)
    t = sub.add_parser("send")
    t.add_argument("host")
    t.add_argument("port", type=int)
    t.add_argument("--count", type=int, default=50)
    t.add_argument("--rate", type=float, default=50.0)
    t.add_argument("--size", type=int, default=64)
    t.add_argument("--echo", action="store_true")
    t.add_argument("--wait", type=float, default=1.0, help="how long to wait for the last echoes")
    a = p.parse_args(argv)
    if a.mode == "reflect":     # a peer, not a measurement: the default scheduling
        reflect(a.address, a.port)
        return 0
    try:
        # measure the link, not the VM's scheduler: below the shaper's priority, above the rest
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(5))
    except (OSError, AttributeError):
        pass
    if a.mode == "echo":
        echo(a.port)
    elif a.mode == "sink":
        sink(a.port, a.idle, a.first_wait)
    else:
        send(a.host, a.port, a.count, a.rate, a.size, a.echo, a.wait)
    return 0


if __name__ == "__main__":
    sys.exit(main())
