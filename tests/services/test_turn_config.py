"""The `services.turn` section of a topology, and the coturn rendering of the same config."""

from lab.model import load_topology
from lab.core.errors import InputError
from lab.services.turn import coturn
from lab.services.turn.config import TurnConfig

import pytest

BASE = """name: t
nodes:
  a: {kind: host}
  r: {kind: router}
  turn: {kind: host, services: [turn]}
links:
  - {a: a, b: r}
  - {a: turn, b: r}
"""


def test_defaults_keep_existing_topologies_working(repo):
    topo = load_topology(repo / "topologies/agent-lan.yaml")
    turn = topo.services["turn"]
    assert turn["backend"] == "embedded" and turn["udp_port"] == 3478 and turn["tls_port"] == 443


def test_options_are_read():
    topo = load_topology("t.yaml", text=BASE + "services:\n  turn: {backend: coturn, realm: corp, user_quota: 3}\n")
    assert topo.services["turn"]["backend"] == "coturn" and topo.services["turn"]["user_quota"] == 3


@pytest.mark.parametrize("snippet, where, words", [
    ("{backend: coturnn}", "services.turn.backend", "not allowed"),
    ("{udp_port: 70000}", "services.turn.udp_port", "out of range"),
    ("{bogus: 1}", "services.turn.bogus", "unknown field"),
    ("{min_port: 6000, max_port: 5000}", "services.turn.min_port", "empty"),
    ("{denied_peers: [nope]}", "services.turn.denied_peers[0]", "not an address"),
    ("{faults: {explode: true}}", "services.turn.faults", "unknown faults"),
    ("{backend: coturn, faults: {stop_relay: true}}", "services.turn.faults", "embedded"),
    ("{backend: coturn, users: {alice: pw}}", "services.turn.users", "secret: null"),
])
def test_bad_options_are_reported_with_place_and_hint(snippet, where, words):
    with pytest.raises(InputError) as exc:
        load_topology("t.yaml", text=BASE + f"services:\n  turn: {snippet}\n")
    text = str(exc.value) + "".join(str(p) for p in getattr(exc.value, "problems", []))
    assert "t.yaml:" in text and where in text and words in text, text


def test_coturn_config_is_equivalent():
    cfg = TurnConfig(addresses=["203.0.113.3"], realm="corp", secret="s3", users={"u": "p"}, min_port=50000,
                     max_port=50100, user_quota=4, allowed_peers=["10.0.0.5/32"], denied_peers=["10.0.0.0/8"],
                     cert="/c.pem", key="/k.pem", udp_port=None)
    text = coturn.render(cfg, "/tmp/x")
    for line in ("realm=corp", "use-auth-secret", "static-auth-secret=s3", "user=u:p", "min-port=50000",
                 "max-port=50100", "user-quota=4", "allowed-peer-ip=10.0.0.5", "denied-peer-ip=10.0.0.0-10.255.255.255",
                 "listening-ip=203.0.113.3", "relay-ip=203.0.113.3", "tls-listening-port=443", "cert=/c.pem",
                 "pkey=/k.pem", "no-udp", "fingerprint", "no-dtls"):
        assert line in text.splitlines(), line
    assert "allow-loopback-peers" not in text
