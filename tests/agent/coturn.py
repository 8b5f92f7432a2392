"""Debian's coturn on 127.0.0.1 for loopback tests (free ports, REST secret)."""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from aioice import stun
from support import free_port, require, stop

SECRET = "icelab-test-secret"


@dataclass
class Coturn:
    port: int
    secret: str
    proc: subprocess.Popen
    tls_port: int | None = None

    def url(self, transport: str = "udp") -> str:
        if transport == "tls":
            return f"turns:127.0.0.1:{self.tls_port}?transport=tcp"
        return f"turn:127.0.0.1:{self.port}?transport={transport}"


@contextlib.contextmanager
def coturn(secret: str = SECRET, relay_ports: int | None = 20, tls: tuple[Path, Path] | None = None):
    """coturn on 127.0.0.1; ``relay_ports`` relay ports (one per allocation; None: coturn's
    whole default range); ``tls`` = (certificate chain, key) also serves ``turns:``."""
    exe = require("turnserver")
    port = free_port()
    tls_port = free_port() if tls else None
    tls_args = [f"--tls-listening-port={tls_port}", f"--cert={tls[0]}", f"--pkey={tls[1]}"] if tls else ["--no-tls"]
    relay_lo = 40000 + (port % 400) * 20
    with tempfile.TemporaryDirectory() as d:
        log = Path(d) / "turn.log"
        proc = subprocess.Popen(
            [exe, "-n", "--listening-ip=127.0.0.1", "--relay-ip=127.0.0.1", f"--listening-port={port}",
             "--use-auth-secret", f"--static-auth-secret={secret}", "--realm=lab",
             "--allow-loopback-peers", "--no-cli", *tls_args, "--no-dtls", "--no-stdout-log",
             f"--log-file={log}", "--simple-log", f"--pidfile={Path(d) / 'pid'}",
             "--no-multicast-peers",
             *([f"--min-port={relay_lo}", f"--max-port={relay_lo + relay_ports - 1}"] if relay_ports else [])],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            _wait_tcp(port, proc, log)
            _wait_udp(port, proc, log)
            if tls_port:
                _wait_tcp(tls_port, proc, log)
            yield Coturn(port, secret, proc, tls_port)
        finally:
            stop(proc)


def _wait_tcp(port: int, proc: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        assert proc.poll() is None, f"turnserver exited: {log.read_text() if log.exists() else ''}"
        time.sleep(0.02)
    raise RuntimeError(f"turnserver did not start listening on {port}")


def _wait_udp(port: int, proc: subprocess.Popen, log: Path) -> None:
    """coturn opens its UDP listener a little after its TCP one: wait until a STUN Binding is
    answered, or the first Allocate of a test is lost and costs a retransmission."""
    request = bytes(stun.Message(message_method=stun.Method.BINDING, message_class=stun.Class.REQUEST))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(0.05)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            s.sendto(request, ("127.0.0.1", port))
            try:
                s.recv(2048)
                return
            except (socket.timeout, ConnectionRefusedError):
                pass
            assert proc.poll() is None, f"turnserver exited: {log.read_text() if log.exists() else ''}"
    raise RuntimeError(f"turnserver does not answer STUN on udp {port}")


@contextlib.contextmanager
def black_hole_udp():
    """A bound UDP port that never answers: what a silent DROP looks like to the sender."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    try:
        yield s
    finally:
        s.close()
