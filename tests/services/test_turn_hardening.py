"""What the audits of the TURN server found (issue 13): unauthenticated memory growth, the
relay port leak, non-ASCII nonces, the peer deny-list, 420 before authentication, static
users with coturn, and requests that left no line in the transaction log.

Most tests drive ``TurnServer`` in-process (a fake connection and fake relay sockets):
they look at what it answers and logs, without sockets or timing."""

from __future__ import annotations

import errno
import os
import re
import socket
import subprocess
import time
import tracemalloc
from pathlib import Path

import pytest

from lab.core import stun
from lab.services.turn.auth import Credentials, rest_password, rest_username
from lab.services.turn.config import TurnConfig
from lab.services.turn.log import read
from lab.services.turn.server import TurnServer
from lab.services.turn.turn import PeerACL

from support import require
from turnlab import SECRET, Client, error, free_port, peer_attr, server

RT_UDP = (stun.REQUESTED_TRANSPORT, bytes([17, 0, 0, 0]))


class FakeRelays:
    """Relay sockets that are tokens; ``fail`` makes ``open`` raise as socket() does
    when the process is out of file descriptors."""

    def __init__(self):
        self.fail: OSError | None = None
        self.open_ports: set[int] = set()

    def open(self, ip, port):
        if self.fail is not None:
            raise self.fail
        self.open_ports.add(port)
        return ("sock", port)

    def attach(self, sock, alloc):
        pass

    def close(self, sock):
        self.open_ports.discard(sock[1])

    def send(self, sock, data, peer):
        pass


class Conn:
    _n = 0

    def __init__(self, transport="udp"):
        Conn._n += 1
        self.transport = transport
        self.client = ("127.0.0.1", 10000 + Conn._n)
        self.local = ("127.0.0.1", 3478)
        self.key = (transport, self.client, self.local)
        self.out: list[bytes] = []

    def send(self, data):
        self.out.append(data)


class Engine:
    """A TurnServer in-process, and a client speaking to it through one Conn."""

    def __init__(self, tmp: Path, **over):
        cfg = TurnConfig(secret=SECRET, users={"alice": "alice-pw"}, min_port=50000, max_port=50009,
                         log=str(tmp / "tx.jsonl"))
        for k, v in over.items():
            setattr(cfg, k, v)
        self.relays = FakeRelays()
        self.srv = TurnServer(cfg, self.relays)
        self.log_path = cfg.log

    def ask(self, conn, method, attrs, username=None, password=None, nonce=None, key=None, tid=None,
            integrity=True) -> stun.Message | None:
        a = list(attrs)
        if username is not None:
            a += [(stun.USERNAME, username if isinstance(username, bytes) else username.encode()),
                  (stun.REALM, b"icelab"),
                  (stun.NONCE, nonce if nonce is not None else self.nonce())]
            if key is None and password is not None:
                key = stun.long_term_key(username, "icelab", password)
        if integrity and a and key is None and username is not None:
            key = os.urandom(16)                 # a bogus integrity
        conn.out.clear()
        self.srv.on_client(stun.encode(method, stun.REQUEST, tid or os.urandom(12), a, key), conn)
        return stun.parse(conn.out[-1]) if conn.out else None

    def nonce(self) -> bytes:
        return self.srv.creds.nonce().encode()

    def log(self) -> list[dict]:
        self.srv.log.flush()
        return read(self.log_path)


# -- 1. unauthenticated memory growth ------------------------------------------------

def test_long_usernames_are_refused_with_400_before_any_work(tmp_path):
    e = Engine(tmp_path)
    name = f"{int(time.time()) + 3600}:" + "x" * 600
    r = e.ask(Conn(), stun.ALLOCATE, [RT_UDP], username=name, password=rest_password(SECRET, name))
    assert error(r) == 400
    assert e.log()[-1]["reason"] == "username too long"
    ok = f"{int(time.time()) + 3600}:" + "x" * 400      # RFC 8489 section 14.3: fewer than 509 bytes
    assert e.ask(Conn(), stun.ALLOCATE, [RT_UDP], username=ok, password=rest_password(SECRET, ok)).cls == stun.SUCCESS


def test_nothing_is_cached_for_requests_whose_integrity_fails(tmp_path):
    """2,000 REST names (500 bytes each) with a bogus MESSAGE-INTEGRITY: the server's heap
    stays within 150 kB (before the fix every name and its key were cached: ~1.5 MB)."""
    e = Engine(tmp_path, log=None)
    conn = Conn()
    expiry = int(time.time()) + 3600
    for i in range(50):                 # warm up: nonces, error codes, interned strings
        e.ask(conn, stun.ALLOCATE, [RT_UDP], username=f"{expiry}:warm{i}".ljust(500, "w"))
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for i in range(2000):
            r = e.ask(conn, stun.ALLOCATE, [RT_UDP], username=f"{expiry}:{i}".ljust(500, "y"))
            assert error(r) == 401
        conn.out.clear()
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert grown < 150_000, grown


def test_the_key_cache_is_capped_in_bytes():
    creds = Credentials("icelab", {}, SECRET, cache_bytes=64_000)
    expiry = int(time.time()) + 3600
    for i in range(2000):
        name = f"{expiry}:{i}".ljust(500, "z")
        key = creds.key(name)
        assert key == stun.long_term_key(name, "icelab", rest_password(SECRET, name))
        creds.remember(name, key)
        assert creds.cached_bytes <= 64_000
    assert creds.cached_bytes > 0


def _rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_an_unauthenticated_flood_leaves_memory_flat(tmp_path):
    """3,000 Allocates with 60 kB usernames and a bogus MESSAGE-INTEGRITY to a real server
    process: its resident memory grows by less than 8 MB (it grew by ~170 MB before)."""
    with server(tmp_path) as s:
        c = Client(s.udp)
        c.request(stun.ALLOCATE, [RT_UDP], auth=False)
        first = c.request(stun.ALLOCATE, [RT_UDP])
        nonce = first.get(stun.NONCE)
        expiry = int(time.time()) + 3600

        def flood(n, start):
            for i in range(start, start + n):
                name = f"{expiry}:{i}".ljust(60_000, "u").encode()
                c.send_raw(stun.encode(stun.ALLOCATE, stun.REQUEST, os.urandom(12), [
                    RT_UDP, (stun.USERNAME, name), (stun.REALM, b"icelab"), (stun.NONCE, nonce)], os.urandom(16)))
                assert c.recv_raw() is not None
        flood(200, 0)
        before = _rss_kb(s.proc.pid)
        flood(3000, 200)
        grown = _rss_kb(s.proc.pid) - before
        assert grown < 8_000, f"grew by {grown} kB"


# -- 2. relay port leak ----------------------------------------------------------------

def test_a_relay_socket_that_cannot_be_opened_gets_508_and_the_port_back(tmp_path):
    e = Engine(tmp_path)
    name = rest_username("bob", 3600)
    pw = rest_password(SECRET, name)
    e.relays.fail = OSError(errno.EMFILE, os.strerror(errno.EMFILE))
    for _ in range(15):                              # more attempts than the 10 relay ports
        r = e.ask(Conn(), stun.ALLOCATE, [RT_UDP], username=name, password=pw)
        assert error(r) == 508
    lines = e.log()
    assert len(lines) == 15 and all(l["code"] == 508 for l in lines)
    assert "Too many open files" in lines[-1]["reason"]
    e.relays.fail = None                             # the condition clears: every port again
    got = set()
    for _ in range(10):
        r = e.ask(Conn(), stun.ALLOCATE, [RT_UDP], username=name, password=pw)
        assert r.cls == stun.SUCCESS
        got.add(stun.parse_xor_address(r.get(stun.XOR_RELAYED_ADDRESS), r.tid)[1])
    assert got == set(range(50000, 50010))
    assert error(e.ask(Conn(), stun.ALLOCATE, [RT_UDP], username=name, password=pw)) == 508


def test_out_of_file_descriptors_then_every_port_again(tmp_path):
    """A real server whose RLIMIT_NOFILE runs out: 508 for each Allocate it cannot serve,
    a line for each; once the limit is raised, all 20 relay ports are allocatable."""
    import random
    import resource
    base = random.randrange(30000, 39000, 100)
    with server(tmp_path, min_port=base, max_port=base + 19) as s:
        pid = s.proc.pid
        soft, hard = resource.prlimit(pid, resource.RLIMIT_NOFILE)
        resource.prlimit(pid, resource.RLIMIT_NOFILE, (len(os.listdir(f"/proc/{pid}/fd")) + 3, hard))
        clients = [Client(s.udp) for _ in range(30)]
        codes = []
        for c in clients:
            c.rest()
            r = c.allocate()
            codes.append("no answer" if r is None else error(r))
        ok = codes.count(None)          # the few the descriptors left allowed
        assert 1 <= ok <= 10 and codes == [None] * ok + [508] * (30 - ok), codes
        resource.prlimit(pid, resource.RLIMIT_NOFILE, (soft, hard))
        more = [Client(s.udp) for _ in range(21 - ok)]
        for c in more:
            c.rest()
        answers = [c.allocate() for c in more]
        assert [error(r) if r else "no answer" for r in answers] == [None] * (20 - ok) + [508]   # all 20 ports
        time.sleep(0.4)
        lines = [l for l in read(s.cfg.log) if l["method"] == "Allocate" and l["code"] == 508]
        assert len(lines) == 30 - ok + 1
        assert all("Too many open files" in l["reason"] for l in lines[:-1])
        assert lines[-1]["reason"] == "no relay port left"


def test_the_real_relays_raise_on_emfile_and_skip_busy_ports(monkeypatch):
    """transports.Relays.open: a port another program holds is None (try the next one);
    socket() failing (out of descriptors) is an error the server answers with 508."""
    from lab.services.turn import transports
    relays = transports.Relays.__new__(transports.Relays)
    busy = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    busy.bind(("127.0.0.1", 0))
    try:
        assert relays.open("127.0.0.1", busy.getsockname()[1]) is None

        def no_fds(*a, **kw):
            raise OSError(errno.EMFILE, os.strerror(errno.EMFILE))
        monkeypatch.setattr(transports.socket, "socket", no_fds)
        with pytest.raises(OSError):
            relays.open("127.0.0.1", 0)
    finally:
        busy.close()


# -- 3. non-ASCII nonce ------------------------------------------------------------------

@pytest.mark.parametrize("nonce", ["0-é".encode(), "é-0123456789abcdef".encode(), b"\xff\xfe-x", "ü".encode() * 4])
def test_a_non_ascii_nonce_is_438(tmp_path, nonce):
    e = Engine(tmp_path)
    r = e.ask(Conn(), stun.ALLOCATE, [RT_UDP], username="alice", password="alice-pw", nonce=nonce)
    assert error(r) == 438 and r.get(stun.NONCE)
    assert e.log()[-1]["reason"] == "bad nonce"


# -- 4. peer deny-list -------------------------------------------------------------------

@pytest.mark.parametrize("ip", ["0.0.0.0", "0.1.2.3", "240.0.0.1", "250.1.1.1", "255.255.255.255",
                                "127.0.0.1", "224.0.0.1", "239.255.255.250"])
def test_reserved_loopback_multicast_and_broadcast_peers_are_refused(ip):
    assert not PeerACL([], []).permits(ip)


def test_allowed_peers_do_not_override_loopback_and_multicast():
    acl = PeerACL(["0.0.0.0/0"], [])
    for ip in ("127.0.0.1", "0.0.0.0", "0.1.2.3", "224.0.0.5", "255.255.255.255", "240.0.0.1"):
        assert not acl.permits(ip), ip
    assert acl.permits("192.0.2.1")
    loop = PeerACL([], [], allow_loopback=True)      # the explicit option (coturn's allow-loopback-peers)
    assert loop.permits("127.0.0.1") and loop.permits("127.9.9.9")
    assert not loop.permits("224.0.0.5") and not loop.permits("0.0.0.0")
    assert PeerACL([], ["10.0.0.0/8"]).permits("10.1.1.1") is False
    assert PeerACL(["10.1.0.0/16"], ["10.0.0.0/8"]).permits("10.1.1.1") is True


PEERS = ("127.0.0.1", "0.0.0.0", "0.1.2.3", "224.0.0.1", "240.0.0.1", "255.255.255.255", "192.0.2.1", "10.1.1.1")


@pytest.mark.parametrize("backend", ["embedded", "coturn"])
def test_both_backends_refuse_the_same_peers(tmp_path, backend):
    """What coturn 4.6.1 answers (measured) is what the embedded server answers."""
    cases = [({"allowed_peers": ["0.0.0.0/0"]}, {"192.0.2.1", "10.1.1.1"}),
             ({"denied_peers": ["10.0.0.0/8"]}, {"192.0.2.1"}),
             ({"allow_loopback": True, "allowed_peers": ["0.0.0.0/0"]}, {"127.0.0.1", "192.0.2.1", "10.1.1.1"})]
    for i, (over, permitted) in enumerate(cases):
        (tmp_path / str(i)).mkdir()
        with server(tmp_path / str(i), backend=backend, users={}, tls_port=None, **over) as s:
            c = Client(s.udp)
            c.rest()
            assert c.allocate().cls == stun.SUCCESS
            got = {ip for ip in PEERS
                   if error(c.request(stun.CREATE_PERMISSION, [peer_attr((ip, 5000))], auth=True)) is None}
            assert got == permitted, (over, got)


# -- 7. 420 after authentication ---------------------------------------------------------

def test_unknown_required_attributes_are_answered_after_authentication(tmp_path):
    e = Engine(tmp_path)
    odd = (0x0031, b"abcd")
    assert error(e.ask(Conn(), stun.ALLOCATE, [RT_UDP, odd])) == 401                      # no credentials
    assert error(e.ask(Conn(), stun.ALLOCATE, [RT_UDP, odd], username="alice", password="wrong")) == 401
    r = e.ask(Conn(), stun.ALLOCATE, [RT_UDP, odd], username="alice", password="alice-pw")
    assert error(r) == 420 and r.get(stun.UNKNOWN_ATTRIBUTES) == b"\x00\x31"
    assert stun.check_integrity(r, stun.long_term_key("alice", "icelab", "alice-pw"))      # RFC 8489 6.3.4
    assert error(e.ask(Conn(), stun.BINDING, [odd])) == 420                              # Binding: no auth
    assert e.log()[-1]["reason"] == "unknown attributes 0x0031"


# -- 8. one log line per request, with a reason ------------------------------------------

def test_every_request_has_a_log_line_that_says_why(tmp_path):
    e = Engine(tmp_path)
    c = Conn()
    e.ask(c, stun.ALLOCATE, [RT_UDP])                                                      # first leg
    e.ask(c, stun.ALLOCATE, [RT_UDP], username="alice", password="wrong")
    e.ask(c, stun.ALLOCATE, [RT_UDP], username="mallory", password="x")
    e.ask(c, stun.ALLOCATE, [RT_UDP], username=rest_username("bob", -60), password="x")
    e.ask(c, stun.ALLOCATE, [RT_UDP], username="alice", password="alice-pw", nonce=b"0-0")
    tid = os.urandom(12)
    ok = e.ask(c, stun.ALLOCATE, [RT_UDP], username="alice", password="alice-pw", tid=tid)
    again = e.ask(c, stun.ALLOCATE, [RT_UDP], username="alice", password="alice-pw", tid=tid)
    assert again.raw == ok.raw
    lines = e.log()
    assert [(l["outcome"], l["code"], l.get("reason")) for l in lines] == [
        ("error", 401, "no credentials"),
        ("error", 401, "wrong password"),
        ("error", 401, "unknown user"),
        ("error", 401, "expired credentials"),
        ("error", 438, "stale nonce"),
        ("success", None, None),
        ("success", None, "retransmission"),
    ]
    assert set(lines[0]) >= {"t", "client", "transport", "method", "outcome", "code", "latency_ms"}
    assert lines[-1]["user"] == "alice"


def test_a_request_that_breaks_the_server_still_gets_500_and_a_line(tmp_path, monkeypatch):
    e = Engine(tmp_path)
    monkeypatch.setattr(e.srv, "_lifetime", lambda msg: 1 // 0)
    r = e.ask(Conn(), stun.ALLOCATE, [RT_UDP], username="alice", password="alice-pw")
    assert error(r) == 500
    assert e.log()[-1]["reason"].startswith("internal error: ZeroDivisionError")


# -- 6. static users and REST credentials, both backends ----------------------------------

def _uclient(port: int, peer_port: int, creds: list[str]) -> str:
    return subprocess.run([require("turnutils_uclient"), "-e", "127.0.0.1", "-r", str(peer_port), "-p", str(port), *creds,
                           "-n", "20", "-m", "2", "-z", "5", "127.0.0.1"],
                          capture_output=True, text=True, timeout=30).stdout


@pytest.fixture
def turn_peer():
    port = free_port()
    p = subprocess.Popen([require("turnutils_peer"), "-L", "127.0.0.1", "-p", str(port)],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.2)
    yield port
    p.kill()
    p.wait()


def _relayed(out: str) -> bool:
    m = re.search(r"Total lost packets (\d+)", out)
    return bool(m) and int(m.group(1)) == 0 and "tot_send_msgs=40, tot_recv_msgs=40" in out


STATIC = ["-u", "alice", "-w", "alice-pw"]
REST = ["-W", SECRET, "-u", "agent"]


def test_embedded_serves_static_users_and_rest_credentials_at_once(tmp_path, turn_peer):
    with server(tmp_path, allow_loopback=True) as s:
        assert _relayed(_uclient(s.cfg.udp_port, turn_peer, STATIC))
        assert _relayed(_uclient(s.cfg.udp_port, turn_peer, REST))


@pytest.mark.parametrize("kind", ["static", "rest"])
def test_coturn_serves_each_credential_kind(tmp_path, turn_peer, kind):
    over = {"secret": None} if kind == "static" else {"users": {}}
    with server(tmp_path, backend="coturn", allow_loopback=True, tls_port=None, **over) as s:
        out = _uclient(s.cfg.udp_port, turn_peer, STATIC if kind == "static" else REST)
        assert _relayed(out), out[-1500:]


def test_coturn_with_both_credential_kinds_is_refused_with_the_reason():
    """coturn 4.6 ignores ``user=`` once ``use-auth-secret`` is on (it answers the static
    users 401, "Cannot find credentials"): say so instead of starting a server that
    refuses them."""
    with pytest.raises(ValueError, match="coturn.*static users.*REST secret"):
        TurnConfig.from_dict({"backend": "coturn", "users": {"alice": "pw"}, "secret": "s"})
    TurnConfig.from_dict({"backend": "coturn", "users": {"alice": "pw"}, "secret": None})
    TurnConfig.from_dict({"backend": "embedded", "users": {"alice": "pw"}, "secret": "s"})
