"""The TURN server's fast paths keep their behaviour: the relay port queue, shared
nonces, the batched transaction log, the STUN codec (against a plain reference encoder)."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import random
import struct
import time

import pytest

from lab.core import stun
from lab.services.turn.auth import Credentials
from lab.services.turn.log import TransactionLog, read
from lab.services.turn.turn import CapacityError, PortPool


# -- relay ports (RFC 8656 section 7.2) ---------------------------------------------

def test_ports_are_distinct_random_and_freed_ones_come_back_last():
    pool = PortPool(50000, 50099)
    taken = [pool.take(lambda p: object())[0] for _ in range(100)]
    assert sorted(taken) == list(range(50000, 50100))
    assert taken != sorted(taken)                       # random order, not a walk
    with pytest.raises(CapacityError):
        pool.take(lambda p: object())
    pool.give(taken[10])
    pool.give(taken[20])
    assert [pool.take(lambda p: object())[0] for _ in range(2)] == [taken[10], taken[20]]


def test_ports_held_by_others_are_skipped_and_508_after_one_pass():
    pool = PortPool(50000, 50009)
    busy = {50000, 50001, 50002, 50003, 50004, 50005, 50006, 50007, 50008}
    tries = []

    def bind(p):
        tries.append(p)
        return None if p in busy else object()
    assert pool.take(bind)[0] == 50009
    tries.clear()
    with pytest.raises(CapacityError):
        pool.take(bind)
    assert sorted(tries) == sorted(busy)                # each free port tried once, then 508
    busy.discard(50004)                                 # the other program let it go
    assert pool.take(bind)[0] == 50004


def test_even_port_and_the_next_one_claimed():
    pool = PortPool(50000, 50009)
    p, _ = pool.take(lambda p: object(), even=True)
    assert p % 2 == 0
    assert pool.claim(p + 1) and not pool.claim(p + 1)
    assert not pool.claim(50010)                        # outside the range
    got = {pool.take(lambda p: object())[0] for _ in range(8)}
    assert got == set(range(50000, 50010)) - {p, p + 1}   # the claimed port is never handed out twice
    pool.give(p + 1)
    assert pool.take(lambda p: object())[0] == p + 1


# -- nonces (RFC 8489 section 9.2) ---------------------------------------------------

def test_nonces_are_shared_within_a_short_window_and_go_stale():
    c = Credentials("icelab", secret="s", nonce_lifetime=600)
    t = 1_800_000_000.0
    n = c.nonce(t)
    assert c.nonce(t + 0.5) == n and c.nonce(t + 1.5) != n
    assert c.nonce_state(n, t + 10) == "ok"
    assert c.nonce_state(n, t + 601) == "stale"
    c._issued.clear()                                   # forgotten by the cache: the HMAC still vouches
    assert c.nonce_state(n, t + 10) == "ok"
    assert c.nonce_state("1234-0000000000000000", t) == "stale"
    assert c.nonce_state("garbage", t) == "bad"
    c.forget_nonces()                                   # a restart
    assert c.nonce_state(n, t + 10) == "stale"


def test_a_short_nonce_lifetime_shortens_the_window():
    c = Credentials("icelab", secret="s", nonce_lifetime=1)
    t = 1_800_000_000.0
    n = c.nonce(t)
    assert c.nonce(t + 0.2) != n                        # a nonce handed out is never near its end
    assert c.nonce_state(c.nonce(t + 0.2), t + 0.3) == "ok"


# -- transaction log -------------------------------------------------------------------

def test_log_lines_are_batched_and_valid_json(tmp_path):
    path = tmp_path / "tx.jsonl"
    log = TransactionLog(str(path))
    started = time.monotonic()
    log.write(("10.0.0.1", 5000), "udp", "Allocate", "error", 401, started)
    log.write(("10.0.0.1", 5000), "tls", "Allocate", "success", None, started, 'odd"user\\')
    assert path.read_text() == ""                       # nothing until the sweeper's flush
    log.flush()
    first, second = read(str(path))
    assert first == {"t": pytest.approx(time.time(), abs=2), "client": "10.0.0.1:5000", "transport": "udp",
                     "method": "Allocate", "outcome": "error", "code": 401,
                     "latency_ms": pytest.approx(0, abs=50)}
    assert second["user"] == 'odd"user\\' and second["code"] is None and second["transport"] == "tls"
    log.close()


# -- the codec against a plain reference ---------------------------------------------

def _reference_encode(method, cls, tid, attrs, key=None, fp=False):
    """RFC 8489 sections 5, 14.5 and 14.7 written out plainly."""
    body = b"".join(struct.pack("!HH", t, len(v)) + v + b"\0" * (-len(v) % 4) for t, v in attrs)
    mtype = stun.message_type(method, cls)
    if key is not None:
        head = struct.pack("!HHI", mtype, len(body) + 24, stun.MAGIC) + tid
        body += struct.pack("!HH", stun.MESSAGE_INTEGRITY, 20) + hmac.new(key, head + body, hashlib.sha1).digest()
    if fp:
        msg = struct.pack("!HHI", mtype, len(body) + 8, stun.MAGIC) + tid + body
        return msg + struct.pack("!HHI", stun.FINGERPRINT, 4, stun.fingerprint(msg))
    return struct.pack("!HHI", mtype, len(body), stun.MAGIC) + tid + body


def test_codec_matches_the_reference_and_round_trips():
    rnd = random.Random(5)
    for _ in range(2000):
        attrs = [(rnd.choice([stun.USERNAME, stun.REALM, stun.NONCE, stun.SOFTWARE, stun.LIFETIME]),
                  rnd.randbytes(rnd.choice([0, 1, 2, 3, 4, 5, 20, 33]))) for _ in range(rnd.randint(0, 5))]
        method, cls = rnd.choice(list(stun.METHOD_NAMES) + [0x0FF]), rnd.randint(0, 3)
        tid, key, fp = os.urandom(12), rnd.choice([None, os.urandom(16)]), rnd.random() < 0.5
        out = stun.encode(method, cls, tid, attrs, key, fp)
        assert out == _reference_encode(method, cls, tid, attrs, key, fp)
        msg = stun.parse(out)
        assert (msg.method, msg.cls, msg.tid, msg.attrs[:len(attrs)]) == (method, cls, tid, attrs)
        assert msg.fingerprinted == fp
        if attrs:
            assert msg.get(attrs[0][0]) == next(v for t, v in attrs if t == attrs[0][0])   # the first one wins
        if key is not None:
            assert stun.check_integrity(msg, key) and not stun.check_integrity(msg, bytes(16))


def test_parse_still_refuses_what_is_not_well_formed():
    ok = stun.encode(stun.BINDING, stun.REQUEST, os.urandom(12), [(stun.SOFTWARE, b"x")], None, True)
    for bad in (ok[:19], ok[:-1], ok[:-4] + b"\0\0\0\0", b"\x80" + ok[1:], ok[:4] + b"\0\0\0\0" + ok[8:]):
        with pytest.raises(stun.ParseError):
            stun.parse(bad)
    json.dumps(repr(stun.parse(ok)))
