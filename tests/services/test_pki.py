"""The lab CA: a real TLS handshake that checks the chain and the host name."""

import socket
import ssl
import threading

import pytest

from lab.services.pki import LabCA


def _handshake(server_ctx, client_ctx, server_hostname):
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(1)
    port = lsock.getsockname()[1]
    errors = []

    def serve():
        conn, _ = lsock.accept()
        try:
            with server_ctx.wrap_socket(conn, server_side=True) as s:
                s.sendall(s.recv(5))
        except (ssl.SSLError, OSError) as exc:
            errors.append(exc)

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
            with client_ctx.wrap_socket(raw, server_hostname=server_hostname) as s:
                s.sendall(b"hello")
                return s.recv(5)
    finally:
        t.join(5)
        lsock.close()


def test_a_lab_client_trusts_a_lab_server(tmp_path):
    ca = LabCA.load_or_create(tmp_path / "pki", "office")
    issued = ca.issue("turn", dns=["turn.lab"], ips=["127.0.0.1"])
    assert _handshake(issued.server_context(), ca.client_context(), "turn.lab") == b"hello"
    assert _handshake(issued.server_context(), ca.client_context(), "127.0.0.1") == b"hello"
    assert oct((tmp_path / "pki" / "ca.key").stat().st_mode & 0o777) == "0o600"


def test_wrong_name_and_foreign_ca_are_refused(tmp_path):
    ca = LabCA.load_or_create(tmp_path / "a")
    other = LabCA.load_or_create(tmp_path / "b")
    issued = ca.issue("signalling", dns=["signalling.lab"])
    with pytest.raises(ssl.SSLCertVerificationError):
        _handshake(issued.server_context(), ca.client_context(), "turn.lab")
    with pytest.raises(ssl.SSLCertVerificationError):
        _handshake(issued.server_context(), other.client_context(), "signalling.lab")


def test_the_ca_is_kept_across_loads(tmp_path):
    a = LabCA.load_or_create(tmp_path)
    b = LabCA.load_or_create(tmp_path)
    assert a.cert_path.read_bytes() == b.cert_path.read_bytes()
