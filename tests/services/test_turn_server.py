"""The embedded TURN server on loopback: coturn's own test clients, aioice, the RFC's
error answers, credentials, faults and the transaction log."""

from __future__ import annotations

import json
import os
import re
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lab.core import stun
from lab.core.control import ask
from lab.services.turn.faults import control

from support import require
from turnlab import Client, error, free_port, peer_attr, server

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    with server(tmp_path_factory.mktemp("turn"), allow_loopback=True) as s:
        yield s


@pytest.fixture
def peer():
    """A UDP socket standing in for the peer."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    s.settimeout(1.0)
    yield s
    s.close()


# -- coturn's clients --------------------------------------------------------------

def test_turnutils_stunclient_gets_its_mapped_address(srv):
    out = subprocess.run([require("turnutils_stunclient"), "-p", str(srv.cfg.udp_port), "127.0.0.1"],
                         capture_output=True, text=True, timeout=10).stdout
    assert re.search(r"UDP reflexive addr: 127\.0\.0\.1:\d+", out), out


@pytest.mark.parametrize("flags", [[], ["-t"], ["-t", "-S"]], ids=["udp", "tcp", "tls"])
def test_turnutils_uclient_relays_without_loss(srv, flags):
    uclient = require("turnutils_uclient")
    pport = free_port()
    peer = subprocess.Popen([require("turnutils_peer"), "-L", "127.0.0.1", "-p", str(pport)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(0.2)
        port = srv.cfg.tls_port if "-S" in flags else srv.cfg.udp_port
        out = subprocess.run([uclient, *flags, "-e", "127.0.0.1", "-r", str(pport), "-p", str(port),
                              "-W", "test-secret", "-u", "agent", "-n", "50", "-m", "4", "-z", "5", "127.0.0.1"],
                             capture_output=True, text=True, timeout=30).stdout
    finally:
        peer.kill()
        peer.wait()
    m = re.search(r"Total lost packets (\d+) \(([\d.]+)%\)", out)
    assert m, out[-2000:]
    assert int(m.group(1)) == 0, out[-2000:]
    # 4 clients x 50 messages, all back; (uclient tries TLS 1.0 and 1.1 first and reports
    # the refusals as errors, against coturn as against us)
    assert "tot_send_msgs=200, tot_recv_msgs=200" in out, out[-2000:]


def test_aioice_allocates_and_relays(srv, tmp_path):
    echo = subprocess.Popen([sys.executable, str(HERE.parent / "udp_probe.py"), "reflect", "127.0.0.1", str(free_port())],
                            stdout=subprocess.PIPE)
    try:
        echo.stdout.readline()
        eport = echo.args[-1]
        c = Client(srv.udp)
        c.rest("aio")
        for transport, port in (("udp", srv.cfg.udp_port), ("tcp", srv.cfg.tcp_port), ("tls", srv.cfg.tls_port)):
            out = subprocess.run([sys.executable, str(HERE / "turn_probe.py"), "--server", "127.0.0.1",
                                  "--port", str(port), "--transport", transport, "--username", c.username,
                                  "--password", _rest_pw(c.username), "--peer", f"127.0.0.1:{eport}",
                                  "--count", "20", "--ca", str(srv.ca)],
                                 capture_output=True, text=True, timeout=30, env=dict(os.environ, PYTHONPATH=str(REPO)))
            assert out.returncode == 0, out.stderr
            res = json.loads(out.stdout)
            assert res["received"] == 20 and res["relay"][0] == "127.0.0.1", (transport, res)
    finally:
        echo.kill()
        echo.wait()


def _rest_pw(name):
    from lab.services.turn.auth import rest_password
    return rest_password("test-secret", name)


# -- RFC answers -------------------------------------------------------------------

def test_binding_has_xor_mapped_address_and_fingerprint(srv):
    c = Client(srv.udp)
    tid = os.urandom(12)
    c.send_raw(stun.encode(stun.BINDING, stun.REQUEST, tid, []))
    raw = c.recv_raw()
    msg = stun.parse(raw)       # parse checks FINGERPRINT
    assert msg.has(stun.FINGERPRINT) and msg.cls == stun.SUCCESS
    assert stun.parse_xor_address(msg.get(stun.XOR_MAPPED_ADDRESS), tid) == c.sock.getsockname()


def test_unknown_comprehension_required_attribute_is_420(srv):
    c = Client(srv.udp)
    msg = c.request(stun.BINDING, [(0x0031, b"abcd"), (0x8077, b"ok")])
    assert error(msg) == 420
    assert struct.unpack("!H", msg.get(stun.UNKNOWN_ATTRIBUTES)) == (0x0031,)


def test_allocate_refresh_lifetime_zero_deletes(srv):
    c = Client(srv.udp)
    c.rest()
    a = c.allocate()
    assert a.cls == stun.SUCCESS and stun.read_u32(a.get(stun.LIFETIME)) == 600
    assert stun.check_integrity(a, c.key)
    assert error(c.allocate()) == 437            # a second allocation on the same 5-tuple
    again = c.request(stun.ALLOCATE, [(stun.REQUESTED_TRANSPORT, bytes([17, 0, 0, 0]))], auth=True, tid=a.tid)
    assert again.raw == a.raw                    # a retransmitted Allocate: the same answer
    r = c.request(stun.REFRESH, [(stun.LIFETIME, stun.u32(99999))], auth=True)
    assert stun.read_u32(r.get(stun.LIFETIME)) == srv.cfg.max_lifetime   # capped
    r = c.request(stun.REFRESH, [(stun.LIFETIME, stun.u32(0))], auth=True)
    assert r.cls == stun.SUCCESS
    assert error(c.request(stun.REFRESH, [], auth=True)) == 437


def test_allocate_errors_400_442(srv):
    c = Client(srv.udp)
    c.rest()
    assert error(c.request(stun.ALLOCATE, [], auth=True)) == 400                  # no REQUESTED-TRANSPORT
    assert error(c.request(stun.ALLOCATE, [(stun.REQUESTED_TRANSPORT, bytes([6, 0, 0, 0]))], auth=True)) == 442


def test_wrong_password_is_401(srv):
    c = Client(srv.udp)
    c.login("alice", "wrong")
    assert error(c.allocate()) == 401
    c.login("alice", "alice-pw")                     # the static user, right password
    assert c.allocate().cls == stun.SUCCESS


def test_expired_rest_credential_is_401(srv):
    c = Client(srv.udp)
    c.rest(ttl=-10)
    assert error(c.allocate()) == 401
    c.rest(secret="not-the-secret")
    assert error(c.allocate()) == 401


def test_relaying_to_a_denied_peer_is_403(tmp_path):
    with server(tmp_path, denied_peers=["192.0.2.0/24"]) as s:
        c = Client(s.udp)
        c.rest()
        assert c.allocate().cls == stun.SUCCESS
        for p in (("127.0.0.1", 5000), ("192.0.2.7", 5000)):     # loopback denied by default
            assert error(c.request(stun.CREATE_PERMISSION, [peer_attr(p)], auth=True)) == 403
            assert error(c.request(stun.CHANNEL_BIND, [(stun.CHANNEL_NUMBER, b"\x40\x00\x00\x00"), peer_attr(p)],
                                   auth=True)) == 403
        assert c.request(stun.CREATE_PERMISSION, [peer_attr(("198.51.100.9", 1))], auth=True).cls == stun.SUCCESS


def test_stale_nonce_is_438_then_the_client_recovers(tmp_path):
    with server(tmp_path, nonce_lifetime=1) as s:
        c = Client(s.udp)
        c.rest()
        assert c.allocate().cls == stun.SUCCESS
        time.sleep(1.2)
        tid = os.urandom(12)
        c.send_raw(stun.encode(stun.REFRESH, stun.REQUEST, tid, [
            (stun.USERNAME, c.username.encode()), (stun.REALM, b"icelab"), (stun.NONCE, c.nonce)], c.key))
        r = stun.parse(c.recv_raw())
        assert error(r) == 438 and r.get(stun.NONCE) != c.nonce
        assert c.request(stun.REFRESH, [], auth=True).cls == stun.SUCCESS     # retries with the new nonce


def _bound(srv, peer, channel=0x4001):
    c = Client(srv.udp)
    c.rest()
    a = c.allocate()
    relay = stun.parse_xor_address(a.get(stun.XOR_RELAYED_ADDRESS), a.tid)
    assert c.request(stun.CHANNEL_BIND, [(stun.CHANNEL_NUMBER, struct.pack("!HH", channel, 0)),
                                         peer_attr(peer.getsockname())], auth=True).cls == stun.SUCCESS
    return c, relay


def test_channel_data_and_indications_relay_both_ways(srv, peer):
    c, relay = _bound(srv, peer)
    c.send_raw(stun.channel_data(0x4001, b"hello"))
    data, src = peer.recvfrom(100)
    assert data == b"hello" and src == relay
    peer.sendto(b"back", relay)
    assert c.recv_raw() == stun.channel_data(0x4001, b"back")
    # Send indication needs a permission, which the ChannelBind installed
    c.send_raw(stun.encode(stun.SEND, stun.INDICATION, os.urandom(12),
                           [peer_attr(peer.getsockname()), (stun.DATA_ATTR, b"via send")]))
    assert peer.recvfrom(100)[0] == b"via send"


def test_channel_data_without_that_channel_is_dropped(srv, peer):
    c, relay = _bound(srv, peer)
    c.send_raw(stun.channel_data(0x4002, b"unbound"))          # this client never bound 0x4002
    other = Client(srv.udp)                                     # a client without an allocation
    other.send_raw(stun.channel_data(0x4001, b"stranger"))
    c.send_raw(stun.channel_data(0x4001, b"bound"))
    assert peer.recvfrom(100)[0] == b"bound"
    peer.settimeout(0.3)
    with pytest.raises(socket.timeout):
        peer.recvfrom(100)


def test_data_from_a_peer_without_permission_is_discarded(srv, peer):
    c, relay = _bound(srv, peer)
    stranger = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    stranger.bind(("127.0.0.2", 0))
    stranger.sendto(b"intruder", relay)
    peer.sendto(b"friend", relay)
    assert c.recv_raw() == stun.channel_data(0x4001, b"friend")
    stranger.close()


def test_tcp_channel_data_is_padded(srv, peer):
    c = Client(("127.0.0.1", srv.cfg.tcp_port), tcp=True)
    c.rest()
    a = c.allocate()
    relay = stun.parse_xor_address(a.get(stun.XOR_RELAYED_ADDRESS), a.tid)
    c.request(stun.CHANNEL_BIND, [(stun.CHANNEL_NUMBER, b"\x40\x05\x00\x00"), peer_attr(peer.getsockname())], auth=True)
    c.send_raw(stun.channel_data(0x4005, b"abcde", pad=True))
    assert peer.recvfrom(100)[0] == b"abcde"
    peer.sendto(b"xyz", relay)
    assert c.recv_raw() == b"\x40\x05\x00\x03xyz\x00"


def test_quota_486_and_capacity_508(tmp_path):
    with server(tmp_path, user_quota=2, min_port=45000, max_port=45002) as s:
        cs = [Client(s.udp) for _ in range(4)]
        for c in cs:
            c.rest("carol")
        assert [error(c.allocate()) for c in cs[:3]] == [None, None, 486]
        d = Client(s.udp)
        d.rest("dave")
        assert error(d.allocate()) is None
        e = Client(s.udp)
        e.rest("erin")
        assert error(e.allocate()) == 508           # three relay ports, all in use


# -- faults and the log ------------------------------------------------------------

def test_faults_live_through_the_control_socket(tmp_path, peer):
    with server(tmp_path, allow_loopback=True) as s:
        ctl = s.cfg.control
        assert control(ctl, {"faults": {"error": [{"method": "Allocate", "code": 508}]}})["ok"]
        c = Client(s.udp)
        c.rest()
        assert error(c.allocate()) == 508
        control(ctl, {"faults": {"drop": [{"method": "Binding", "transport": "udp"}]}})
        assert Client(s.udp, timeout=0.3).request(stun.BINDING, []) is None
        control(ctl, {"faults": {"delay": [{"method": "Binding", "ms": 300}]}})
        t0 = time.monotonic()
        assert Client(s.udp).request(stun.BINDING, []).cls == stun.SUCCESS
        assert 0.28 < time.monotonic() - t0 < 0.8
        control(ctl, {"faults": {}})
        c, relay = _bound(s, peer)
        control(ctl, {"faults": {"stop_relay": True}})
        c.send_raw(stun.channel_data(0x4001, b"lost"))
        control(ctl, {"faults": {}})
        c.send_raw(stun.channel_data(0x4001, b"kept"))
        assert peer.recvfrom(100)[0] == b"kept"
        control(ctl, {"expire_permissions": True})
        c.send_raw(stun.channel_data(0x4001, b"no permission"))
        peer.settimeout(0.3)
        with pytest.raises(socket.timeout):
            peer.recvfrom(100)
        st = control(ctl, {"restart": True})
        assert st["ok"]
        assert control(ctl, {"status": True})["allocations"] == 0
        assert error(c.request(stun.REFRESH, [], auth=True)) in (437, 438)
        time.sleep(0.4)
        log = [json.loads(l) for l in Path(s.cfg.log).read_text().splitlines()]
        assert set(log[0]) >= {"t", "client", "transport", "method", "outcome", "code", "latency_ms"}
        assert any(r["method"] == "Binding" and r["outcome"] == "dropped" for r in log)
        assert any(r["method"] == "Allocate" and r["code"] == 508 for r in log)
        delayed = [r for r in log if r["method"] == "Binding" and r["latency_ms"] > 250]
        assert delayed


def test_faults_from_the_config_expire_permissions_early(tmp_path, peer):
    with server(tmp_path, allow_loopback=True, faults={"permission_lifetime": 0.5}) as s:
        c = Client(s.udp)
        c.rest()
        c.allocate()
        c.request(stun.CREATE_PERMISSION, [peer_attr(peer.getsockname())], auth=True)
        send = lambda d: c.send_raw(stun.encode(stun.SEND, stun.INDICATION, os.urandom(12),
                                                [peer_attr(peer.getsockname()), (stun.DATA_ATTR, d)]))
        send(b"early")
        assert peer.recvfrom(100)[0] == b"early"
        time.sleep(0.7)
        send(b"late")
        peer.settimeout(0.3)
        with pytest.raises(socket.timeout):
            peer.recvfrom(100)


def test_rfc5780_other_address_and_change_request(tmp_path):
    alt = free_port()
    with server(tmp_path, alt_address="127.0.0.2", alt_port=alt) as s:
        c = Client(s.udp)
        c.sock.close()
        c.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)     # unconnected: answers come from elsewhere
        c.sock.settimeout(2)
        tid = os.urandom(12)
        c.sock.sendto(stun.encode(stun.BINDING, stun.REQUEST, tid, [(stun.CHANGE_REQUEST, stun.u32(6))]), s.udp)
        data, src = c.sock.recvfrom(1000)
        msg = stun.parse(data)
        assert src == ("127.0.0.2", alt)
        assert msg.get(stun.OTHER_ADDRESS) == stun.address(("127.0.0.2", alt))
        assert msg.get(stun.RESPONSE_ORIGIN) == stun.address(("127.0.0.2", alt))


@pytest.mark.parametrize("strict, expected", [(False, 600), (True, 300)])
def test_channel_bind_permission_lifetime(tmp_path, strict, expected):
    """coturn's 600 s by default (aioice depends on it), RFC 8656's 300 s when strict."""
    with server(tmp_path, allow_loopback=True, strict_channel_permission=strict) as s:
        st = control(s.cfg.control, {"status": True})
        c = Client(s.udp)
        c.rest()
        c.allocate()
        c.request(stun.CHANNEL_BIND, [(stun.CHANNEL_NUMBER, b"\x40\x00\x00\x00"), peer_attr(("127.0.0.1", 9))],
                  auth=True)
        left = control(s.cfg.control, {"status": True})["permissions"]
        assert [round(x) for x in left] == [expected]


def test_two_workers_share_the_ports(tmp_path, peer):
    """workers: 2 (SO_REUSEPORT): each client stays on one worker; control fans out."""
    with server(tmp_path, allow_loopback=True, workers=2) as s:
        clients, served = [], [0, 0]
        slices = [s.cfg.for_worker(i) for i in range(2)]
        for i in range(16):
            c, relay = _bound(s, peer, channel=0x4001)
            c.send_raw(stun.channel_data(0x4001, b"w%d" % i))
            assert peer.recvfrom(100)[0] == b"w%d" % i
            peer.sendto(b"back", relay)
            assert c.recv_raw() == stun.channel_data(0x4001, b"back")
            clients.append(c)
            # each worker relays from its own slice of the ports: the relay port says which one served
            (w,) = [k for k, sl in enumerate(slices) if sl.min_port <= relay[1] <= sl.max_port]
            served[w] += 1
        # 16 clients on random source ports: all on one worker would happen once in 2**15 runs
        assert served[0] and served[1], f"clients per worker: {served}"
        assert os.path.exists(s.cfg.control + ".1")
        assert [ask(sl.control, {"status": True})["allocations"] for sl in slices] == served
        st = control(s.cfg.control, {"status": True})
        assert st["allocations"] == 16
        assert control(s.cfg.control, {"restart": True})["ok"]
        assert control(s.cfg.control, {"status": True})["allocations"] == 0
