"""Reachability probes that tell which way packets died.

Run inside lab nodes (``python -m lab.net.probe``):

- ``serve --proto udp|tcp --port P --log FILE``: an echo responder. It logs every request
  it receives (JSON lines: time, sequence, source address and port) before answering, so a
  request that arrived but whose reply did not come back is told apart from one that never
  arrived: the signature of a stateless firewall without a return rule.
- ``send --proto udp|tcp|stun --to ADDR --port P [--count N --interval S --timeout S --sport P]``:
  sends numbered requests and prints one JSON object: what was sent, which replies came back,
  and their round-trip times. Over TCP the reply is the handshake's SYN-ACK: the probe works
  against any TCP server (the lab's signalling on 443 included), and the request it then sends
  is what the lab's own responder logs.

UDP requests carry ``icelab-probe <run> <seq>``; over TCP each request is a connection of its
own (a request is only "received" once the handshake completed, so over TCP a dropped return
path looks like a dropped request: use UDP to tell the two apart).

``stun`` probes are STUN Binding requests (RFC 8489 section 6) whose transaction ID carries
the run and the sequence number: any STUN or TURN server answers them (the lab's own, coturn,
the responder here), and captures recognise them by the run id like the others. This is what
the softphone's endpoint test and a browser send to a TURN server's port 3478. Their wire
format is ``lab.core.stun``'s, the lab's one STUN codec; this module imports nothing else of
the lab, so it starts in milliseconds inside nodes.
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

from lab.core import stun

MAGIC = b"icelab-probe"


def _tid_prefix(run: str) -> bytes:
    return run.encode()[:10].ljust(10, b"-")


def stun_request(run: str, seq: int) -> bytes:
    """A Binding request; transaction ID = the run id (10 ASCII bytes) + seq (2 bytes)."""
    return stun.encode(stun.BINDING, stun.REQUEST, _tid_prefix(run) + struct.pack("!H", seq & 0xFFFF), [])


def stun_answer(data: bytes, peer: tuple[str, int]) -> bytes | None:
    """A Binding success response with XOR-MAPPED-ADDRESS (RFC 8489 section 14.2), or None
    if ``data`` is not a Binding request."""
    try:
        req = stun.parse(data)
    except stun.ParseError:
        return None
    if req.method != stun.BINDING or req.cls != stun.REQUEST:
        return None
    return stun.encode(stun.BINDING, stun.SUCCESS, req.tid,
                       [(stun.XOR_MAPPED_ADDRESS, stun.xor_address(peer, req.tid))])


def stun_seq(data: bytes, run: str) -> int | None:
    """The sequence number of a Binding success answering one of ``run``'s requests."""
    h = stun.peek(data)
    if h is None or h.method != stun.BINDING or h.cls != stun.SUCCESS or h.tid[:10] != _tid_prefix(run):
        return None
    return struct.unpack("!H", h.tid[10:])[0]


def serve(proto: str, port: int, log_path: str, address: str = "0.0.0.0") -> None:
    log = open(log_path, "a", buffering=1)
    if proto in ("udp", "stun"):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((address, port))
        print("ready", flush=True)
        while True:
            data, peer = s.recvfrom(2048)
            if proto == "stun":
                answer = stun_answer(data, peer)
                req = answer and "stun " + data[8:18].decode(errors="replace").rstrip("-") \
                    + f" {struct.unpack('!H', data[18:20])[0]}"
            else:               # the echo: the request is its own answer
                answer = data if data.startswith(MAGIC) else None
                req = answer and data.decode(errors="replace")
            if answer is None:
                continue
            log.write(json.dumps({"t": time.time(), "req": req, "src": peer[0], "sport": peer[1]}) + "\n")
            s.sendto(answer, peer)
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((address, port))
    s.listen(64)
    print("ready", flush=True)
    while True:
        conn, peer = s.accept()
        conn.settimeout(2)
        try:
            data = conn.recv(2048)
            if data.startswith(MAGIC):
                log.write(json.dumps({"t": time.time(), "req": data.decode(errors="replace"),
                                      "src": peer[0], "sport": peer[1]}) + "\n")
                conn.sendall(data)
        except OSError:
            pass
        finally:
            conn.close()


def send(proto: str, to: str, port: int, count: int, interval: float, timeout: float,
         run: str, sport: int | None = None) -> dict:
    sent: dict[int, float] = {}
    rtts: dict[int, float] = {}
    errors: list[str] = []
    if proto in ("udp", "stun"):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        if sport:
            s.bind(("0.0.0.0", sport))
        s.setblocking(False)
        next_send = time.monotonic()
        seq = 0
        deadline = None
        while True:
            now = time.monotonic()
            if seq < count and now >= next_send:
                payload = stun_request(run, seq) if proto == "stun" else b"%s %s %d" % (MAGIC, run.encode(), seq)
                try:
                    s.sendto(payload, (to, port))
                except OSError as exc:     # e.g. EPERM from a local OUTPUT drop
                    errors.append(f"seq {seq}: {exc.strerror}")
                sent[seq] = now
                seq += 1
                next_send += interval
                if seq == count:
                    deadline = now + timeout
            if deadline is not None and (now >= deadline or len(rtts) == count):
                break
            wait = (next_send if seq < count else deadline) - now
            r, _, _ = select.select([s], [], [], max(0.0, wait))
            if r:
                try:
                    data, _peer = s.recvfrom(2048)
                except OSError:
                    continue
                if proto == "stun":
                    n = stun_seq(data, run)
                else:
                    parts = data.split()
                    n = int(parts[2]) if len(parts) == 3 and parts[0] == MAGIC and parts[1] == run.encode() else None
                if n is not None and n in sent and n not in rtts:
                    rtts[n] = time.monotonic() - sent[n]
        local = s.getsockname()
        s.close()
    else:
        local = None
        for seq in range(count):
            t = time.monotonic()
            sent[seq] = t
            try:
                with socket.create_connection((to, port), timeout=timeout,
                                              source_address=("0.0.0.0", sport) if sport else None) as c:
                    # the handshake is the round trip: any TCP server (a TLS one too) answers it
                    rtts[seq] = time.monotonic() - t
                    local = local or c.getsockname()
                    c.sendall(b"%s %s %d" % (MAGIC, run.encode(), seq))
            except OSError as exc:
                errors.append(f"seq {seq}: {exc.strerror or exc}")
            time.sleep(max(0.0, interval - (time.monotonic() - t)))
    return {"proto": proto, "to": to, "port": port, "sent": len(sent), "replies": len(rtts),
            "rtt_ms": [round(rtts[k] * 1000, 3) for k in sorted(rtts)],
            "local": f"{local[0]}:{local[1]}" if local else None, "errors": errors[:5]}


def received(log_path: str, run: str) -> list[dict]:
    """The requests of ``run`` that a responder logged."""
    out = []
    try:
        with open(log_path) as f:
            for line in f:
                try:
                    item = json.loads(line)
                except ValueError:
                    continue
                if item.get("req", "").split()[1:2] == [run[:10]]:
                    out.append(item)
    except FileNotFoundError:
        pass
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m lab.net.probe")
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("serve")
    s.add_argument("--proto", choices=("udp", "tcp", "stun"), default="udp")
    s.add_argument("--port", type=int, required=True)
    s.add_argument("--log", required=True)
    s = sub.add_parser("send")
    s.add_argument("--proto", choices=("udp", "tcp", "stun"), default="udp")
    s.add_argument("--to", required=True)
    s.add_argument("--port", type=int, required=True)
    s.add_argument("--sport", type=int)
    s.add_argument("--count", type=int, default=5)
    s.add_argument("--interval", type=float, default=0.05)
    s.add_argument("--timeout", type=float, default=1.0)
    s.add_argument("--run", default=str(os.getpid()))
    a = p.parse_args(argv)
    if a.cmd == "serve":
        try:
            serve(a.proto, a.port, a.log)
        except OSError as exc:
            print(f"error: cannot listen on {a.proto} {a.port}: {exc.strerror}", flush=True)
            return 1
        return 0
    print(json.dumps(send(a.proto, a.to, a.port, a.count, a.interval, a.timeout, a.run, a.sport)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
