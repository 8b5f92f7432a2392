"""Mininet node classes for icelab: every node, switches included, in its own namespace.

Mininet configures each interface with its own shell command as it is created; icelab
renders each node's whole configuration into one script instead (see render.py) and runs
all the scripts in parallel, which is what keeps a 100-host lab quick to build. For the same
reason the nodes' shells start all at once (``start_shells``) and the veth pairs are created
by one ``ip -batch`` (``create_veths``), where Mininet waits for each in turn.
"""

from __future__ import annotations

import os
import pty
import resource
import select
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

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
    #: spawn the shell without waiting for its prompt; ``start_shells`` waits for them all
    deferred_shell = False

    def _popen(self, cmd, **params):
        env = dict(params.pop("env", None) or os.environ)
        env.update(ICELAB_LAB=self.lab, ICELAB_NODE=self.short)
        return super()._popen(cmd, env=env, **params)

    def startShell(self, mnopts=None):
        """Mininet's startShell (mininet/node.py, 2.3.0) up to its wait for the prompt.
        Spawning a shell takes a fraction of a millisecond; waiting for each bash to be
        ready before spawning the next is what costs Mininet about 12 ms a node."""
        if not self.deferred_shell:
            return super().startShell(mnopts)
        cmd = ["mnexec", "-cdn", "env", "PS1=" + chr(127), "bash", "--norc", "--noediting", "-is",
               "mininet:" + self.name]
        self.master, self.slave = pty.openpty()
        self.shell = self._popen(cmd, stdin=self.slave, stdout=self.slave, stderr=self.slave, close_fds=False)
        self.stdin = os.fdopen(self.master, "r")
        self.stdout = self.stdin
        self.pid = self.shell.pid
        self.pollOut = select.poll()
        self.pollOut.register(self.stdout)
        self.outToNode[self.stdout.fileno()] = self
        self.inToNode[self.stdin.fileno()] = self
        self.execed = False
        self.lastCmd = None
        self.lastPid = None
        self.readbuf = ""
        self.waiting = True           # until start_shells has seen its prompt


@contextmanager
def descriptor_limit_for(shells: int) -> Iterator[None]:
    """While node shells are spawned, this process's soft descriptor limit is just above what
    it needs (its open files and a pty pair per shell). ``mnexec -c`` closes every descriptor
    up to that limit in each new shell: with a limit of 20,000 that is 5 ms of CPU a shell,
    2.5 s for a 500-agent lab. ``start_shells`` gives the shells the usual limit back."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = len(os.listdir("/proc/self/fd")) + 2 * shells + 64
    if need >= soft:
        yield
        return
    resource.setrlimit(resource.RLIMIT_NOFILE, (need, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def start_shells(nodes: list) -> None:
    """Wait for every deferred shell's first prompt, then set them all up as Mininet does
    (no history file, no echo, no job control), all at once."""
    for node in nodes:
        data = ""
        while not data.endswith(chr(127)):
            node.pollOut.poll()
            data = node.read(1024)
            if not data and node.shell.poll() is not None:
                raise LabError(f"the shell of node '{node.short}' ended as it started "
                               f"(exit status {node.shell.returncode})")
        node.waiting = False
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    for node in nodes:
        node.sendCmd(f"unset HISTFILE; stty -echo; set +m; ulimit -Sn {soft}")
    for node in nodes:
        node.waitOutput()


def create_veths(batches: dict, run_dir: Path) -> None:
    """``batches``: node -> lines for ``ip -batch`` that create veth pairs, run in that node's
    namespace (each end created straight into its own node's namespace, never in the root
    namespace), all at once. The kernel serialises the work anyway (one lock); what this
    saves is a shell round trip and an ``ip`` process per link."""
    for node, lines in batches.items():
        path = run_dir / f"{node.short}.veths"
        path.write_text("\n".join(lines) + "\n")
        node.sendCmd(f"ip -batch {path} 2>&1; echo icelab-rc=$?")
    failed = []
    for node in batches:
        out = node.waitOutput()
        if "icelab-rc=0" not in out:
            failed.append(f"{node.short}: {out.replace('icelab-rc=', 'exit status ').strip()}")
    if failed:
        raise LabError("creating veth pairs failed:\n  " + "\n  ".join(failed))


class LabNode(_Marked, Node):
    """A host or a router: a shell in a network namespace of its own."""

    def __init__(self, name, lab: str = "", short: str = "", deferred_shell: bool = False, **params):
        self.lab, self.short, self.deferred_shell = lab, short, deferred_shell
        params["inNamespace"] = True
        super().__init__(name, **params)

    def config(self, **_params):
        return {}


class LabBridge(_Marked, Switch):
    """A lan: a Linux bridge inside its own network namespace, so no lab interface ever
    appears in the root namespace and the host's bridge-netfilter never sees lab traffic.
    The bridge itself is created by the node's script (see render.py)."""

    def __init__(self, name, dpid: str = "1", lab: str = "", short: str = "", deferred_shell: bool = False,
                 **params):
        self.lab, self.short, self.deferred_shell = lab, short, deferred_shell
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

    def __init__(self, node1, node2, ifindex: tuple[int, int], created: bool = False, **params):
        self.ifindex = ifindex
        self.created = created        # the pair exists already (create_veths)
        super().__init__(node1, node2, **params)

    @staticmethod
    def batch_line(name1: str, addr1: str, index1: int, name2: str, addr2: str, index2: int, pid2: int,
                   pid1: int | None = None) -> str:
        """``ip link add`` of the pair; with ``pid1`` both ends go straight into their nodes'
        namespaces, whichever lab node runs it (so one ``ip -batch`` can create a lab's veths)."""
        into = f" netns {pid1}" if pid1 is not None else ""
        return (f"link add name {name1} address {addr1} index {index1}{into} type veth "
                f"peer name {name2} address {addr2} index {index2} netns {pid2}")

    def makeIntfPair(self, intfname1, intfname2, addr1=None, addr2=None,
                     node1=None, node2=None, deleteIntfs=True):
        if self.created:
            return
        i1, i2 = self.ifindex
        out = node1.cmd("ip " + self.batch_line(intfname1, addr1, i1, intfname2, addr2, i2, node2.pid))
        if out.strip():
            raise LabError(f"creating the veth pair {intfname1}/{intfname2} failed: {out.strip()}")
