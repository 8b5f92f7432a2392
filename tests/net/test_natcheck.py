"""nat-check's client and responder on loopback (no lab): the RFC 5780 tests against the
TURN server's Binding on two addresses and two ports, and the errors nat-check raises."""

import socket
import threading

import pytest

from lab.core import stun
from lab.core.errors import LabError
from lab.net import natcheck
from lab.services.stun5780 import Responder
from support import free_port


@pytest.fixture
def responder():
    ports = (free_port(), free_port())
    r = Responder("127.0.0.1", "127.0.0.2", ports)
    t = threading.Thread(target=r.run, daemon=True)
    t.start()
    assert r.ready.wait(5) and r.error is None, r.error
    yield r, ports
    r.stop()
    t.join(5)
    assert not t.is_alive()


def test_discover_without_a_nat_measures_endpoint_independent(responder):
    _, (p, _q) = responder
    mapping, filtering, mapped = natcheck.discover("127.0.0.1", p)
    assert (mapping, filtering) == ("endpoint-independent", "endpoint-independent")
    assert len(mapped) == 2 and mapped[0] == mapped[1] and mapped[0].startswith("127.0.0.1:")


def test_change_request_is_answered_from_the_other_address_and_port(responder):
    _, (p, q) = responder
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.bind(("127.0.0.1", 0))
        s.settimeout(2)
        s.sendto(stun.encode(stun.BINDING, stun.REQUEST, b"t" * 12,
                             [(stun.CHANGE_REQUEST, stun.u32(stun.CHANGE_IP | stun.CHANGE_PORT))]), ("127.0.0.1", p))
        data, src = s.recvfrom(2048)
    finally:
        s.close()
    assert src == ("127.0.0.2", q)
    answer = natcheck._decode(stun.parse(data))
    assert answer.mapped[0] == "127.0.0.1" and answer.other == ("127.0.0.2", q) and answer.origin == ("127.0.0.2", q)


def test_the_responder_hands_back_a_port_it_cannot_bind(responder):
    _, ports = responder
    busy = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    busy.bind(("127.0.0.3", ports[1]))          # no SO_REUSEADDR: the responder's bind fails
    try:
        r = Responder("127.0.0.3", "127.0.0.4", ports)
        r.run()
        assert isinstance(r.error, OSError) and r.ready.is_set()
        r.stop()                                 # returns: nothing to stop
    finally:
        busy.close()


def test_no_answer_and_no_responder_host_are_lab_errors():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    silent = s.getsockname()[1]
    try:
        with pytest.raises(natcheck.NatCheckError, match=f"no answer from the STUN responder at 127.0.0.1:{silent}"):
            natcheck.discover("127.0.0.1", silent)
    finally:
        s.close()
    topo = {"nodes": {"a": {"kind": "host", "interfaces": [{"name": "eth0", "peer": "r", "address": "10.0.0.2/24"}]}}}
    with pytest.raises(LabError, match="no host with two addresses"):
        natcheck.check(topo, {}, "a")
    assert issubclass(natcheck.NatCheckError, LabError) and natcheck.NatCheckError.exit_status == 1
