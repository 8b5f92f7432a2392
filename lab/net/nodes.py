"""Mininet node classes for icelab: every node, switches included, in its own namespace.

Mininet configures each interface with its own shell command as it is created; icelab
renders each node's whole configuration into one script instead (see render.py) and runs
all the scripts in parallel, which is what keeps a 100-host lab quick to build.
"""

from __future__ import annotations

import os

from mininet.link import Intf, Link
from mininet.node import Node, Switch

from lab.core.errors import LabError


class LabIntf(Intf):
    """A veth end; its addresses and state come from the node's script, not from here."""

    def config(self, **_params):
        return {}


class _Marked:
    """Every process a lab node starts carries ICELAB_LAB and ICELAB_NODE in its
    environment, so that `icelab clean` can recognise what a killed lab left running
    even when its state file is gone. ``_popen`` is where Mininet spawns all of them
    (the node's shell, and ``popen`` for services)."""

    lab = ""
    short = ""

    def _popen(self, cmd, **params):
        env = dict(params.pop("env", None) or os.environ)
        env.update(ICELAB_LAB=self.lab, ICELAB_NODE=self.short)
        return super()._popen(cmd, env=env, **params)


class LabNode(_Marked, Node):
    """A host or a router: a shell in a network namespace of its own."""

    def __init__(self, name, lab: str = "", short: str = "", **params):
        self.lab, self.short = lab, short
        params["inNamespace"] = True
        super().__init__(name, **params)

    def config(self, **_params):
        return {}


class LabBridge(_Marked, Switch):
    """A lan: a Linux bridge inside its own network namespace, so no lab interface ever
    appears in the root namespace and the host's bridge-netfilter never sees lab traffic.
    The bridge itself is created by the node's script (see render.py)."""

    def __init__(self, name, dpid: str = "1", lab: str = "", short: str = "", **params):
        self.lab, self.short = lab, short
        params["inNamespace"] = True
        super().__init__(name, dpid=dpid, **params)

    def config(self, **_params):
        return {}

    def start(self, _controllers):
        pass

    def stop(self, deleteIntfs=True):
        self.terminate()

    def connected(self):
        return True


class LabLink(Link):
    """A veth pair created from inside the first node's namespace directly into the
    second's, with explicit, distinct interface indexes.

    The kernel applies a carrier change at once only when a device's index differs from
    its peer's (``linkwatch_urgent_event``); otherwise it may defer it by up to a second,
    and the interface drops what is sent meanwhile. In fresh namespaces both ends of a
    veth are usually index 2, which is why bridge ports seemed to "take a second".
    """

    def __init__(self, node1, node2, ifindex: tuple[int, int], **params):
        self.ifindex = ifindex
        super().__init__(node1, node2, **params)

    def makeIntfPair(self, intfname1, intfname2, addr1=None, addr2=None,
                     node1=None, node2=None, deleteIntfs=True):
        i1, i2 = self.ifindex
        out = node1.cmd(f"ip link add name {intfname1} address {addr1} index {i1} type veth "
                        f"peer name {intfname2} address {addr2} index {i2} netns {node2.pid}")
        if out.strip():
            raise LabError(f"creating the veth pair {intfname1}/{intfname2} failed: {out.strip()}")
