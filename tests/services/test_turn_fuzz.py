"""Fuzzing the embedded server: >= 100,000 mutated STUN/TURN messages over UDP and TCP
(a seeded mutator, so a failure can be replayed). The server must never crash, never
answer with anything but a well-formed STUN response to a request it was sent, give
the RFC's answer where one is due (420, 401, 400) and silence otherwise, and keep
serving a valid client throughout."""

from __future__ import annotations

import os
import random
import socket
import struct
import time
from pathlib import Path

from lab.core import stun

from turnlab import Client, error, peer_attr, server

SEED = int(os.environ.get("ICELAB_FUZZ_SEED", "5780"))
UDP_MESSAGES = 80_000
TCP_MESSAGES = 40_000
BATCH = 250


class Mutator:
    """Makes one message per call and says what the server must do with it:
    ("silent",) / ("code", n) / ("any",)."""

    def __init__(self, rnd: random.Random, username: str, key: bytes, nonce: bytes):
        self.r = rnd
        self.cred = [(stun.USERNAME, username.encode()), (stun.REALM, b"icelab"), (stun.NONCE, nonce)]
        self.key = key

    def base(self, tid: bytes) -> tuple[bytes, bool]:
        r = self.r
        kind = r.randrange(6)
        if kind == 0:
            return stun.encode(stun.BINDING, stun.REQUEST, tid, [], add_fingerprint=r.random() < .5), False
        if kind == 1:
            return stun.encode(stun.ALLOCATE, stun.REQUEST, tid,
                               [(stun.REQUESTED_TRANSPORT, bytes([17, 0, 0, 0]))] + self.cred, self.key, True), True
        if kind == 2:
            return stun.encode(stun.CREATE_PERMISSION, stun.REQUEST, tid,
                               [peer_attr(("198.51.100.1", 9))] + self.cred, self.key), True
        if kind == 3:
            return stun.encode(stun.CHANNEL_BIND, stun.REQUEST, tid,
                               [(stun.CHANNEL_NUMBER, b"\x40\x10\x00\x00"), peer_attr(("198.51.100.1", 9))]
                               + self.cred, self.key), True
        if kind == 4:
            return stun.encode(stun.SEND, stun.INDICATION, tid,
                               [peer_attr(("198.51.100.1", 9)), (stun.DATA_ATTR, os.urandom(r.randrange(40)))]), False
        return stun.channel_data(0x4000 + r.randrange(0x1000), os.urandom(r.randrange(60))), False

    def make(self) -> tuple[bytes, tuple]:
        r = self.r
        tid = r.randbytes(12)
        m = r.randrange(13)
        if m == 0:      # an unknown comprehension-required attribute: 420 (Binding: no auth)
            t = r.choice([0x0002, 0x0031, 0x7FFF, 0x0040])
            return stun.encode(stun.BINDING, stun.REQUEST, tid, [(t, r.randbytes(r.randrange(9)))]), ("code", 420)
        if m == 1:      # bad MESSAGE-INTEGRITY: 401
            raw = bytearray(stun.encode(stun.REFRESH, stun.REQUEST, tid, self.cred, self.key))
            raw[-1 - r.randrange(20)] ^= 1 << r.randrange(8)
            return bytes(raw), ("code", 401)
        if m == 2:      # credentials missing an attribute: 400
            cred = list(self.cred)
            cred.pop(r.randrange(3))
            return stun.encode(stun.REFRESH, stun.REQUEST, tid, cred, self.key), ("code", 400)
        if m == 3:      # pure noise, possibly looking like STUN or ChannelData
            raw = bytearray(r.randbytes(r.randrange(1, 200)))
            if r.random() < .5 and len(raw) >= 20:
                raw[0] &= 0x3F
                raw[4:8] = stun.MAGIC_BYTES
                raw[8:20] = tid
            return bytes(raw), ("any",)
        if m == 4:      # oversized: a big unknown comprehension-optional attribute
            big = r.randrange(2000, 60000) & ~3
            return stun.encode(stun.BINDING, stun.REQUEST, tid, [(0x8123, r.randbytes(big))]), ("code", None)
        base, _ = self.base(tid)
        raw = bytearray(base)
        if m == 5:      # truncated
            cut = r.randrange(1, len(raw))
            return bytes(raw[:cut]), ("silent",) if raw[0] < 0x40 and cut >= 20 else ("any",)
        if m == 6:      # wrong length in the header
            if raw[0] >= 0x40:
                return bytes(raw), ("any",)
            ln = struct.unpack_from("!H", raw, 2)[0]
            struct.pack_into("!H", raw, 2, (ln + r.choice([-4, -1, 1, 2, 4, 8, 400])) & 0xFFFF)
            return bytes(raw), ("silent",)
        if m == 7:      # trailing garbage
            return bytes(raw) + r.randbytes(r.randrange(1, 30)), ("silent",) if raw[0] < 0x40 else ("any",)
        if m == 8:      # an attribute's length changed
            if raw[0] >= 0x40 or len(raw) < 24:
                return bytes(raw), ("any",)
            struct.pack_into("!H", raw, 22, r.randrange(0x10000))
            return bytes(raw), ("any",)
        if m == 9:      # the magic cookie broken
            if raw[0] >= 0x40:
                return bytes(raw), ("any",)
            raw[4 + r.randrange(4)] ^= 0xFF
            return bytes(raw), ("silent",)
        if m == 10:     # random message type (responses and indications must not be answered)
            if raw[0] >= 0x40:
                return bytes(raw), ("any",)
            struct.pack_into("!H", raw, 0, r.randrange(0x4000))
            return bytes(raw), ("any",)
        # bit flips anywhere
        for _ in range(r.randrange(1, 9)):
            i = r.randrange(len(raw))
            raw[i] ^= 1 << r.randrange(8)
        return bytes(raw), ("any",)


def check_answer(data: bytes, sent: dict, bad: list) -> None:
    """An answer must be a well-formed response to something we sent as a request."""
    try:
        msg = stun.parse(data)
    except stun.ParseError as exc:
        bad.append(("garbage answer", str(exc), data[:40].hex()))
        return
    exp = sent.pop(msg.tid, None)
    if exp is None:
        bad.append(("answer to no request", msg.tid.hex()))
        return
    if msg.cls not in (stun.SUCCESS, stun.ERROR):
        bad.append(("answer is not a response", msg.cls))
    if exp[0] == "silent":
        bad.append(("answered what must be discarded", msg.tid.hex(), error(msg)))
    if exp[0] == "code" and error(msg) != exp[1]:
        bad.append(("wrong answer", exp, error(msg)))


def test_fuzz_udp_and_tcp(tmp_path):
    rnd = random.Random(SEED)
    with server(tmp_path) as s:
        good = Client(s.udp)
        good.rest("good")
        assert good.allocate().cls == stun.SUCCESS
        fuzz = Client(s.udp)
        fuzz.rest("fuzz")
        assert fuzz.allocate().cls == stun.SUCCESS           # so TURN requests get past 437 sometimes
        fuzz.request(stun.CHANNEL_BIND, [(stun.CHANNEL_NUMBER, b"\x40\x10\x00\x00"),
                                         peer_attr(("198.51.100.1", 9))], auth=True)
        mut = Mutator(rnd, fuzz.username, fuzz.key, fuzz.nonce)
        bad: list = []
        answered = expected = 0
        t0 = time.monotonic()
        fuzz.sock.settimeout(2.0)
        sent_total = 0
        while sent_total < UDP_MESSAGES:
            sent: dict = {}
            for _ in range(BATCH):
                data, exp = mut.make()
                if len(data) >= 20:
                    sent[data[8:20]] = exp
                    expected += exp[0] == "code"
                fuzz.sock.send(data)
            sent_total += BATCH
            # a sentinel: a valid Binding, answered after everything before it
            stid = os.urandom(12)
            fuzz.sock.send(stun.encode(stun.BINDING, stun.REQUEST, stid, []))
            while True:
                data = fuzz.sock.recv(65536)
                if stun.is_stun(data) and data[8:20] == stid:
                    break
                if stun.is_stun(data):
                    answered += sent.get(data[8:20], ("",))[0] == "code"
                check_answer(data, sent, bad)
            if sent_total % 10000 == 0:      # the valid client is served throughout
                assert good.request(stun.REFRESH, [], auth=True).cls == stun.SUCCESS
                assert good.request(stun.BINDING, []).cls == stun.SUCCESS
            assert not bad, bad[:5]
        udp_s = time.monotonic() - t0
        assert answered >= 0.95 * expected, (answered, expected)

        # TCP: framing by the messages' own (mutated) lengths; a lost framing ends the
        # connection, and the client opens another
        t1 = time.monotonic()
        sent_total = conns = 0
        while sent_total < TCP_MESSAGES:
            c = socket.create_connection(("127.0.0.1", s.cfg.tcp_port), 2)
            conns += 1
            c.settimeout(0.5)
            batch = b"".join(mut.make()[0] for _ in range(200))
            sent_total += 200
            buf = b""
            try:
                c.sendall(batch)
                c.shutdown(socket.SHUT_WR)
                while True:
                    chunk = c.recv(65536)
                    if not chunk:
                        break
                    buf += chunk
            except OSError:         # the server cut the connection: framing lost, as it should
                pass
            c.close()
            # every whole frame in the answer must be well-formed STUN
            pos = 0
            while pos + 20 <= len(buf):
                n = 20 + struct.unpack_from("!H", buf, pos + 2)[0]
                if pos + n > len(buf):
                    break
                try:
                    m = stun.parse(buf[pos:pos + n])
                    assert m.cls in (stun.SUCCESS, stun.ERROR)
                except stun.ParseError as exc:
                    bad.append(("garbage answer over tcp", str(exc)))
                pos += n
            if sent_total % 4000 == 0:
                assert good.request(stun.BINDING, []).cls == stun.SUCCESS
        assert not bad, bad[:5]
        tcp_s = time.monotonic() - t1
        assert s.proc.poll() is None, "the server died"
        assert good.request(stun.REFRESH, [], auth=True).cls == stun.SUCCESS
        log = Path(s.dir / "turn.log").read_text()
        assert "error on a message" not in log, log[-3000:]
        print(f"fuzz: {UDP_MESSAGES} udp in {udp_s:.1f} s, {TCP_MESSAGES} tcp in {tcp_s:.1f} s over {conns} connections")
