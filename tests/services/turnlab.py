"""Helpers for the TURN tests: a server on loopback in a subprocess, and a small
synchronous STUN/TURN client built on lab.core.stun."""

from __future__ import annotations

import contextlib
import os
import random
import socket
import struct
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from support import free_port, require, stop

from lab.services.pki import LabCA
from lab.core import stun
from lab.services.turn.auth import rest_password, rest_username
from lab.services.turn.config import TurnConfig

REPO = Path(__file__).resolve().parents[2]
SECRET = "test-secret"


@dataclass
class Running:
    cfg: TurnConfig
    proc: subprocess.Popen
    ca: Path
    dir: Path

    @property
    def udp(self):
        return ("127.0.0.1", self.cfg.udp_port)


@contextlib.contextmanager
def server(tmp: Path, backend: str = "embedded", **over):
    ca = LabCA.load_or_create(tmp / "pki")
    issued = ca.issue("turn", ["localhost"], ["127.0.0.1"])
    p1, p2 = free_port(), free_port()
    base = random.randrange(40000, 60000, 1000)
    cfg = TurnConfig(backend=backend, addresses=["127.0.0.1"], udp_port=p1, tcp_port=p1, tls_port=p2,
                     cert=str(issued.cert), key=str(issued.key), secret=SECRET, realm="icelab",
                     users={"alice": "alice-pw"}, min_port=base, max_port=base + 999,
                     log=str(tmp / "transactions.jsonl"), control=str(tmp / "control.sock"))
    for k, v in over.items():
        setattr(cfg, k, v)
    if backend == "coturn":
        require("turnserver")
        cfg.log = cfg.control = None
    path = tmp / "turn.json"
    cfg.save(path)
    log = open(tmp / "turn.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "lab.services.turn", "--config", str(path)],
                            stdout=log, stderr=subprocess.STDOUT, cwd=REPO,
                            env=dict(os.environ, PYTHONPATH=str(REPO)))
    try:
        wait_listening(cfg, proc, tmp / "turn.log")
        yield Running(cfg, proc, ca.cert_path, tmp)
    finally:
        stop(proc)
        log.close()


def wait_listening(cfg, proc, logfile, timeout=10.0):
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if proc.poll() is not None:
            raise RuntimeError("server exited: " + Path(logfile).read_text())
        try:
            socket.create_connection(("127.0.0.1", cfg.tcp_port), 0.2).close()
            c = Client(("127.0.0.1", cfg.udp_port), timeout=0.3)
            r = c.request(stun.BINDING, [])
            c.close()
            if r is not None:
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError("server not ready: " + Path(logfile).read_text())


class Client:
    """One UDP (or TCP) 5-tuple speaking STUN/TURN, with long-term credentials."""

    def __init__(self, server, tcp: bool = False, timeout: float = 2.0):
        self.server = server
        self.tcp = tcp
        if tcp:
            self.sock = socket.create_connection(server, timeout)
            self.buf = b""
        else:
            self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            self.sock.connect(server)
        self.sock.settimeout(timeout)
        self.username = self.key = self.realm = self.nonce = None

    def close(self):
        self.sock.close()

    def login(self, username: str, password: str, realm: str = "icelab"):
        self.username, self.key = username, stun.long_term_key(username, realm, password)
        self.realm = realm

    def rest(self, user="bob", ttl=3600, secret=SECRET):
        name = rest_username(user, ttl)
        self.login(name, rest_password(secret, name))

    def send_raw(self, data: bytes):
        self.sock.send(data)

    def recv_raw(self) -> bytes | None:
        try:
            if not self.tcp:
                return self.sock.recv(65536)
            while True:
                if len(self.buf) >= 4:
                    if self.buf[0] < 0x40:
                        n = 20 + struct.unpack_from("!H", self.buf, 2)[0]
                    else:
                        ln = struct.unpack_from("!H", self.buf, 2)[0]
                        n = 4 + ln + (-ln % 4)
                    if len(self.buf) >= n:
                        out, self.buf = self.buf[:n], self.buf[n:]
                        return out
                chunk = self.sock.recv(65536)
                if not chunk:
                    return None
                self.buf += chunk
        except (socket.timeout, ConnectionError):
            return None

    def request(self, method, attrs, auth: bool = False, tid: bytes | None = None, fingerprint=True):
        """One transaction; with ``auth`` the 401/438 dance as RFC 8489 section 9.2.3 says."""
        for _ in range(3):
            tid_ = tid or os.urandom(12)
            a = list(attrs)
            key = None
            if auth and self.nonce:
                a += [(stun.USERNAME, self.username.encode()), (stun.REALM, self.realm.encode()),
                      (stun.NONCE, self.nonce)]
                key = self.key
            self.send_raw(stun.encode(method, stun.REQUEST, tid_, a, key, fingerprint))
            while True:
                data = self.recv_raw()
                if data is None:
                    return None
                if stun.is_stun(data):
                    msg = stun.parse(data)
                    if msg.tid == tid_:
                        break
            code = error(msg)
            if auth and code in (401, 438) and (self.nonce is None or code == 438):
                self.nonce = msg.get(stun.NONCE)
                self.realm = (msg.get(stun.REALM) or b"").decode() or self.realm
                continue
            return msg
        return msg

    def allocate(self, **kw):
        return self.request(stun.ALLOCATE, [(stun.REQUESTED_TRANSPORT, bytes([17, 0, 0, 0]))], auth=True, **kw)


def error(msg) -> int | None:
    if msg is None or msg.cls != stun.ERROR:
        return None
    return stun.parse_error_code(msg.get(stun.ERROR_CODE))


def peer_attr(addr, tid=b""):
    return (stun.XOR_PEER_ADDRESS, stun.xor_address(addr, tid))
