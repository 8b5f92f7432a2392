"""The lab side of icelab serve without a lab: the kernel's counters as read, drops placed on
the interface they came in by, what `serve` takes for a scenario, where it listens."""

from __future__ import annotations

import os
import socket
from types import SimpleNamespace

import pytest

from lab.cli.serve import is_scenario, listen
from lab.core.errors import UsageError
from lab.model.firewall import FirewallPolicy
from lab.serve.live import LiveLab, read_netdev


def test_read_netdev_is_the_namespaces_table():
    dev = read_netdev(os.getpid())
    assert "lo" in dev
    assert set(dev["lo"]) == {"rx_packets", "rx_dropped", "tx_packets", "tx_dropped"}
    assert read_netdev(2**22 + 7) == {}        # no such process: nothing, not an error


def test_firewall_drops_counted_on_the_interface_they_came_in_by():
    node = SimpleNamespace(name="fw", policy=FirewallPolicy("stateful", ["eth0"], ["eth1"]))
    itfs = {"fw:eth0": {"fw_dropped": 0}, "fw:eth1": {"fw_dropped": 0}}
    rows = [{"chain": "outbound", "action": "drop", "packets": 6}, {"chain": "outbound", "action": "accept", "packets": 90},
            {"chain": "inbound", "action": "reject", "packets": 2}, {"chain": "inbound", "action": "drop", "packets": 1}]
    LiveLab._attribute_drops(node, rows, itfs)
    assert itfs == {"fw:eth0": {"fw_dropped": 6}, "fw:eth1": {"fw_dropped": 3}}


def test_what_is_a_scenario(repo):
    assert is_scenario(str(repo / "scenarios" / "udp3478-blocked.yaml"))
    assert not is_scenario(str(repo / "topologies" / "office-firewall.yaml"))
    assert not is_scenario(str(repo / "no-such-file.yaml"))      # left to the topology loader's message


def test_listen_refuses_what_it_cannot_bind():
    with pytest.raises(UsageError, match="not an IP address"):
        listen("localhost:80", 0)
    s = listen("127.0.0.1", 0)
    try:
        with pytest.raises(UsageError, match="cannot listen on 127.0.0.1"):
            listen("127.0.0.1", s.getsockname()[1])
    finally:
        s.close()
    assert s.family == socket.AF_INET
