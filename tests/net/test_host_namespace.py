"""The guard that no lab node shares the host's network namespace, where /proc/1/ns/net cannot
be read (containers, some VMs: root without CAP_SYS_PTRACE over pid 1). Faked here by making
pid 1's namespace unreadable; the guard must still know the host's namespace, or refuse."""

import os
from types import SimpleNamespace

import pytest

from lab.core.errors import LabError
from lab.net import Network, procs
from lab.net.state import NodeState

REAL = procs.netns_inode


@pytest.fixture
def pid1_unreadable(monkeypatch):
    monkeypatch.setattr(procs, "netns_inode", lambda pid: None if pid == 1 else REAL(pid))


def _network_with(netns: int) -> SimpleNamespace:
    return SimpleNamespace(state=SimpleNamespace(nodes={"agent1": NodeState(os.getpid(), 1, netns)}))


def test_the_host_namespace_is_known_without_pid_1(pid1_unreadable):
    assert procs.host_netns() == {REAL(os.getpid())}


def test_a_node_in_the_host_namespace_is_refused_without_pid_1(pid1_unreadable):
    """The lab runs in the host's namespace: a node whose shell did not get a namespace of its
    own shows the lab's own inode, which the guard must refuse."""
    with pytest.raises(LabError, match="not in a network namespace of its own"):
        Network._check_isolated(_network_with(REAL(os.getpid())))


def test_a_node_in_a_namespace_of_its_own_passes(pid1_unreadable):
    Network._check_isolated(_network_with(4026599999))


def test_nothing_readable_refuses_to_build(monkeypatch):
    monkeypatch.setattr(procs, "netns_inode", lambda pid: None)
    with pytest.raises(LabError, match="cannot tell"):
        procs.host_netns()
    with pytest.raises(LabError):
        Network._check_isolated(_network_with(4026599999))
