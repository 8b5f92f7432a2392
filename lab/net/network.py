"""A topology realised in Mininet, and its teardown.

Build order: state file (so a crash at any later point is cleanable), one namespace per
node (Mininet shells via ``mnexec -n``; lans too; all spawned, then all waited for), veth
pairs created by one ``ip -batch`` inside a lab node, each end straight into its own node's
namespace (never in the root namespace), then each node's rendered script, all nodes in
parallel, the services' hosts first so that their services start while the rest is built.
A 500-agent lab builds in about a third of raw Mininet's time (docs/benchmarks.md).

Teardown does not ask Mininet to delete links one by one: it ends every process in the
lab's namespaces, which frees the namespaces and, with them, every veth and bridge.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

from mininet.net import Mininet

from lab.model.topology import Topology
from . import procs, render, services, vdi, vpn
from .nodes import LabBridge, LabIntf, LabLink, LabNode, create_veths, descriptor_limit_for, start_shells
from .shaping import setup as setup_shaping
from .state import LabState, NodeState, all_states, get, remove_files
from lab.core.errors import LabError
from lab.core.names import mac_address, shell_name

Progress = Callable[[str], None]

#: veth interface indexes start here (per namespace, so they only need to differ
#: between the two ends of a pair; see LabLink)
IFINDEX_BASE = 100


def check_environment() -> None:
    """Fail early, with the fix, when the lab cannot run here."""
    if os.geteuid() != 0:
        raise LabError("building a lab needs root (network namespaces): run it with sudo")
    missing = [t for t in ("mnexec", "ip", "sysctl", "ifconfig") if shutil.which(t) is None]
    if missing:
        raise LabError(f"missing tools: {', '.join(missing)}; run 'sudo make setup' to install them")


@dataclass
class Network:
    """A running lab. Use as a context manager, or call build() and teardown()."""

    topo: Topology
    progress: Progress = lambda msg: None
    net: Mininet | None = None
    state: LabState | None = None
    nodes: dict = field(default_factory=dict)     # name -> Mininet node
    timings: dict[str, float] = field(default_factory=dict)
    #: start the hosts' services (TURN, signalling): off for tests of a network function alone
    start_services: bool = True
    vpn: object = None                            # lab.net.vpn.VpnRun when the lab has tunnels
    vdi: object = None                            # lab.net.vdi: desktop name -> display server
    services: list = field(default_factory=list)  # lab.net.services.RunningService
    #: called with the network once it forwards, before the services start (a scenario
    #: starts its softphone processes there, so that their start-up overlaps the services')
    before_services: Any = None

    # -- lifecycle -----------------------------------------------------------------

    def __enter__(self) -> "Network":
        try:
            self.build()
        except BaseException:
            self.teardown()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.teardown()

    def build(self) -> None:
        check_environment()
        t0 = time.monotonic()
        existing = get(self.topo.name)
        if existing is not None:
            if existing.owner_alive():
                raise LabError(f"a lab named '{self.topo.name}' is already up (pid {existing.owner_pid}); "
                               f"stop it with 'icelab down {self.topo.name}' or choose another name with --name")
            self.progress(f"removing what an earlier run of '{self.topo.name}' left")
            clean_lab(existing.name, existing)
        me = os.getpid()
        self.state = LabState(self.topo.name, self.topo.file, me, procs.start_time(me) or 0,
                              topology=self.topo.to_dict())
        self.state.save()
        self.state.dir.mkdir(parents=True, exist_ok=True)
        self.net = Mininet(topo=None, controller=None, build=False, autoSetMacs=False,
                           autoStaticArp=False, waitConnected=False, inNamespace=True)
        self.progress(f"creating {len(self.topo.nodes)} nodes")
        # every shell spawned first, then all waited for: they start side by side
        with descriptor_limit_for(len(self.topo.nodes)):
            for i, node in enumerate(self.topo.nodes.values()):
                mname = shell_name(self.topo.name, node.name)
                if node.kind == "lan":
                    mn = self.net.addSwitch(mname, cls=LabBridge, dpid=f"{i + 1:x}",
                                            lab=self.topo.name, short=node.name, deferred_shell=True)
                else:
                    mn = self.net.addHost(mname, cls=LabNode, ip=None, lab=self.topo.name, short=node.name,
                                          deferred_shell=True)
                self.nodes[node.name] = mn
        start_shells(list(self.nodes.values()))
        for name, mn in self.nodes.items():
            # after the prompt: only then is the shell surely in its own namespace
            self.state.nodes[name] = NodeState(mn.pid, procs.start_time(mn.pid) or 0, procs.netns_inode(mn.pid) or 0)
        self.state.save()
        self._check_isolated()
        self.timings["nodes"] = time.monotonic() - t0
        self.progress(f"creating {len(self.topo.links)} links")
        lines, macs = [], {}
        for link in self.topo.links:
            a, b = link.a, link.b
            ifindex = (IFINDEX_BASE + 2 * link.index, IFINDEX_BASE + 2 * link.index + 1)
            macs[link.index] = (mac_address(self.topo.name, a.node, a.name), mac_address(self.topo.name, b.node, b.name))
            lines.append(LabLink.batch_line(a.name, macs[link.index][0], ifindex[0], b.name, macs[link.index][1],
                                            ifindex[1], self.nodes[b.node].pid, pid1=self.nodes[a.node].pid))
        if lines:
            # one ip for the whole lab, in the first node's namespace: each end goes straight into its own
            create_veths({next(iter(self.nodes.values())): lines}, self.state.dir)
        for link in self.topo.links:
            a, b = link.a, link.b
            self.net.addLink(self.nodes[a.node], self.nodes[b.node], cls=LabLink, created=True,
                             ifindex=(IFINDEX_BASE + 2 * link.index, IFINDEX_BASE + 2 * link.index + 1),
                             intfName1=a.name, intfName2=b.name, addr1=macs[link.index][0],
                             addr2=macs[link.index][1], intf=LabIntf)
        self.timings["links"] = time.monotonic() - t0 - self.timings["nodes"]
        self.progress("configuring addresses, bridges and routes")
        # the service hosts are configured first and their services launched at once: their
        # Python start-up (a second or two) then overlaps the rest of the build
        launched = self._configure()
        self.timings["config"] = time.monotonic() - t0 - self.timings["nodes"] - self.timings["links"]
        t1 = time.monotonic()
        self._wait_ready()
        self.timings["ready"] = time.monotonic() - t1
        setup_shaping(self)     # link impairments declared in the file (no-op without any)
        if vpn.configured(self.topo):      # tunnels need the underlay up (lab/net/vpn.py)
            self.progress("starting VPN tunnels")
            t1 = time.monotonic()
            vpn.start(self)
            self.timings["vpn"] = time.monotonic() - t1
        if vdi.configured(self.topo):      # display servers of virtual desktops (lab/net/vdi.py)
            self.progress("starting virtual desktops")
            vdi.start(self)
        if self.before_services is not None:
            self.before_services(self)
        t2 = time.monotonic()
        services.wait(self, launched)
        self.timings["services"] = time.monotonic() - t2
        self.state.status = "running"
        self.state.save()
        self.timings["total"] = time.monotonic() - t0

    def _check_isolated(self) -> None:
        host = procs.host_netns()
        for name, ns in self.state.nodes.items():
            if not ns.netns or ns.netns in host:
                raise LabError(f"node '{name}' is not in a network namespace of its own")

    READY_TIMEOUT = 5.0

    def _configure(self) -> list:
        """Run every node's script, all nodes at once. The services' hosts are waited for
        first and their services launched (not waited for) at once; returns them."""
        scripts = {}
        for name, node in self.topo.nodes.items():
            path = self.state.dir / f"{name}.sh"
            path.write_text(render.script(self.topo, node))
            scripts[name] = path
        for name, mn in self.nodes.items():
            mn.sendCmd(f"sh {scripts[name]} 2>&1; echo icelab-rc=$?")
        serving = {n.name for n in self.topo.hosts() if n.services} if self.start_services else set()
        failures, launched = [], []
        for i, name in enumerate(sorted(self.nodes, key=lambda n: n not in serving)):
            out = self.nodes[name].waitOutput()
            if "icelab-rc=0" not in out:
                failures.append(f"{name}: {out.strip()}")
            if serving and not failures and i + 1 == len(serving):
                launched = self.services = services.launch(self)
        if failures:
            raise LabError("configuring nodes failed:\n  " + "\n  ".join(failures))
        return launched

    def _wait_ready(self) -> None:
        """Wait until every veth is operationally up: until the kernel's link watcher
        has applied its carrier, it drops what is sent (see LabLink). A bridge device's
        own state does not matter for forwarding between its ports. Nearly always true at
        the first look, which costs one ``ip`` and one ``awk`` per node (hundreds of nodes
        looking every 10 ms would starve the machine)."""
        down = "ip -o link show type veth | awk '!/state UP/ {printf \"%s \", $2}'"
        loop = (f"i=0; while d=$({down}); [ -n \"$d\" ] && [ $i -lt {int(self.READY_TIMEOUT * 100)} ]; do "
                "i=$((i+1)); sleep 0.01; done; echo \"$d\"")
        for mn in self.nodes.values():
            mn.sendCmd(loop)
        down_at = {}
        for name, mn in self.nodes.items():
            out = mn.waitOutput().strip()
            if out:
                down_at[name] = out
        if down_at:
            raise LabError("interfaces did not come up within "
                           f"{self.READY_TIMEOUT:.0f} s: " + "; ".join(f"{k}: {v}" for k, v in down_at.items()))

    def teardown(self) -> None:
        """End every process in the lab's namespaces and remove its files. Safe to call
        twice and after a partial build; SIGINT and SIGTERM wait until it is done."""
        if self.state is None:
            return
        with _signals_deferred():
            self.state.status = "stopping"
            try:
                self.state.save()
            except OSError:
                pass
            services.stop(self.services)
            self.services = []
            for mn in self.nodes.values():
                try:
                    mn.terminate()
                except Exception:
                    pass
            clean_lab(self.topo.name, self.state)
            for mn in self.nodes.values():
                try:
                    mn.shell.wait(timeout=2)
                except Exception:
                    pass
            self.nodes.clear()
            self.net = None
            self.state = None

    # -- use -----------------------------------------------------------------------

    def node(self, name: str):
        return self.nodes[name]

    def cmd(self, node: str, *args: str) -> str:
        return self.nodes[node].cmd(*args)


@contextmanager
def _signals_deferred() -> Iterator[None]:
    """Hold SIGINT/SIGTERM/SIGHUP while cleaning up, then deliver them."""
    sigs = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP}
    try:
        old = signal.pthread_sigmask(signal.SIG_BLOCK, sigs)
    except (ValueError, OSError):
        yield
        return
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


# -- cleanup of labs whose owner is gone -------------------------------------------


@dataclass
class Cleaned:
    lab: str
    processes: int
    namespaces: int
    state_file: bool


def _lab_macs(name: str, st: LabState | None) -> set[str]:
    if st is None or not st.topology:
        return set()
    return {mac_address(name, node, itf["name"])
            for node, spec in st.topology.get("nodes", {}).items() for itf in spec.get("interfaces", [])}


def _carries_macs(pid: int, macs: set[str]) -> bool:
    """Does the namespace ``pid`` is in hold one of the lab's own (derived) MACs?"""
    try:
        out = subprocess.run(["nsenter", "-t", str(pid), "-n", "ip", "-o", "link", "show"],
                             capture_output=True, text=True, timeout=5).stdout
    except (OSError, subprocess.TimeoutExpired):
        return False
    return any(mac in out for mac in macs)


def _lab_namespaces(name: str, st: LabState | None, scan: list[procs.Proc]) -> set[int]:
    """The namespaces that are certainly the lab's.

    Found through processes that carry the lab's mark (its shells' names, ICELAB_LAB in
    the environment). A namespace recorded in the state file is trusted only when such a
    process or the lab's own MACs confirm it: once a namespace is gone the kernel may
    give its inode number to someone else's, which must never be touched.
    """
    forbidden = {procs.root_netns(), procs.netns_inode(os.getpid()), None, 0}
    marked = {p.netns for p in scan if p.lab == name and p.in_this_run_dir} - forbidden
    recorded = ({ns.netns for ns in st.nodes.values()} if st else set()) - forbidden - marked
    if recorded:
        macs = _lab_macs(name, st)
        holders = {}
        for p in scan:
            if p.netns in recorded:
                holders.setdefault(p.netns, p.pid)
        marked |= {ns for ns, pid in holders.items() if macs and _carries_macs(pid, macs)}
    return marked


def clean_lab(name: str, st: LabState | None) -> Cleaned:
    scan = procs.scan()
    inodes = _lab_namespaces(name, st, scan)
    victims = procs.in_namespaces(inodes, scan)
    held = {p.netns for p in victims}
    left = procs.kill_all([p.pid for p in victims])
    if left:
        raise LabError(f"could not end processes {left} of lab '{name}'")
    remove_files(name)
    return Cleaned(name, len(victims), len(held), st is not None)


def orphans() -> dict[str, LabState | None]:
    """Labs whose owner is gone: stale state files, and marked processes of labs that
    have no state file and no living owner (a node shell whose parent still runs)."""
    out: dict[str, LabState | None] = {}
    live = set()
    for st in all_states():
        if st.owner_alive():
            live.add(st.name)
        else:
            out[st.name] = st
    scan = procs.scan()
    by_pid = {p.pid: p for p in scan}
    for p in scan:
        if p.lab and p.in_this_run_dir and p.lab not in live and p.lab not in out:
            owned = any(q.lab == p.lab and q.in_this_run_dir and q.is_shell and q.ppid in by_pid and q.ppid != 1
                        for q in scan)
            if owned:
                live.add(p.lab)
            else:
                out[p.lab] = None
    return out


def clean_all() -> list[Cleaned]:
    return [clean_lab(name, st) for name, st in sorted(orphans().items())]
