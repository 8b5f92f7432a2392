"""Processes and network namespaces, read from /proc.

A lab node is a Mininet shell in an unnamed network namespace; the namespace lives as
long as any process is in it. So "what a lab left behind" is exactly: the processes in
its namespaces (identified by the namespace inode), and nothing needs unmounting.
A pid alone is not an identity (pids are reused): we pair it with its start time.
"""

from __future__ import annotations

import os
import signal
from dataclasses import dataclass
from pathlib import Path

from lab.core.errors import LabError
from lab.core.names import DEFAULT_RUN_DIR, SHELL_MARK, lab_of_shell, run_dir
from lab.core.supervise import TimedOut, wait_until


def start_time(pid: int) -> int | None:
    """The process's start time in clock ticks since boot, or None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    # comm may contain spaces and parentheses: split after the last ')'
    fields = data[data.rindex(b")") + 2:].split()
    if fields[0] == b"Z":
        return None
    return int(fields[19])


def netns_inode(pid: int) -> int | None:
    try:
        return os.stat(f"/proc/{pid}/ns/net").st_ino
    except OSError:
        return None


def cmdline(pid: int) -> list[str]:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return [a.decode(errors="replace") for a in f.read().split(b"\0") if a]
    except OSError:
        return []


def alive(pid: int | None, started: int | None) -> bool:
    """True if ``pid`` still runs and is the same process (same start time)."""
    return pid is not None and started is not None and start_time(pid) == started


def all_pids() -> list[int]:
    return [int(d) for d in os.listdir("/proc") if d.isdigit()]


def _environ_marks(pid: int) -> tuple[str, str]:
    """ICELAB_LAB ('' if none) and the run directory the process was started under."""
    lab, where = "", ""
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            for item in f.read().split(b"\0"):
                if item.startswith(b"ICELAB_LAB="):
                    lab = item[11:].decode(errors="replace")
                elif item.startswith(b"ICELAB_RUN_DIR="):
                    where = item[15:].decode(errors="replace")
    except OSError:
        pass
    return lab, where


def _ppid(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
        return int(data[data.rindex(b")") + 2:].split()[1])
    except (OSError, ValueError, IndexError):
        return 0


@dataclass(frozen=True)
class Proc:
    pid: int
    netns: int | None
    argv: tuple[str, ...]
    lab: str = ""          # the lab that started it: its shell name or ICELAB_LAB
    ppid: int = 0
    #: ICELAB_RUN_DIR in its environment ('' when not set: the default run directory)
    run_dir: str = ""

    @property
    def in_this_run_dir(self) -> bool:
        """Started under this process's run directory? A lab is its name within a run
        directory: two run directories (the test suite's parallel workers) may each hold a
        lab of the same name, and one's teardown or `icelab clean` must not end the other's."""
        return Path(self.run_dir or DEFAULT_RUN_DIR) == run_dir()

    @property
    def is_shell(self) -> bool:
        return bool(self.argv) and self.argv[-1].startswith(SHELL_MARK)


def scan() -> list[Proc]:
    out = []
    for pid in all_pids():
        ns = netns_inode(pid)
        if ns is None:
            continue
        argv = tuple(cmdline(pid))
        lab, where = _environ_marks(pid)
        if not lab and argv:
            lab = lab_of_shell(argv[-1])
        out.append(Proc(pid, ns, argv, lab, _ppid(pid), where))
    return out


def in_namespaces(inodes: set[int], procs: list[Proc] | None = None) -> list[Proc]:
    me = os.getpid()
    return [p for p in (procs if procs is not None else scan()) if p.netns in inodes and p.pid != me]


def root_netns() -> int | None:
    return netns_inode(1)


def host_netns() -> set[int]:
    """The network namespaces no lab node may be in: pid 1's, and the one this process runs
    in (labs are built from the host's namespace). Where /proc/1/ns/net cannot be read
    (containers, some VMs) our own is still known; when neither can be read nothing can be
    checked, and the lab is not built."""
    found = {ns for ns in (netns_inode(1), netns_inode(os.getpid())) if ns}
    if not found:
        raise LabError("cannot tell the host's network namespace (neither /proc/1/ns/net nor "
                       "/proc/self/ns/net can be read): refusing to build a lab that might share it")
    return found


def kill_all(pids: list[int], grace: float = 0.5) -> list[int]:
    """SIGTERM, wait up to ``grace`` seconds, then SIGKILL. Returns the pids still alive."""
    starts = {pid: start_time(pid) for pid in pids}
    for pid in pids:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    left = [p for p in pids if alive(p, starts[p])]

    def gone() -> bool:
        left[:] = [p for p in left if alive(p, starts[p])]
        return not left

    try:
        wait_until(gone, grace, 0.02, what="the processes ending")
    except TimedOut:
        for pid in left:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        try:
            wait_until(gone, 2.0, 0.01, what="the killed processes ending")
        except TimedOut:
            pass
    return left
