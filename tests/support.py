"""What the host looks like from the root namespace, and what labs left behind.

Every test that builds a lab compares the host before and after (conftest.py): links,
addresses, routes, rules, the nftables ruleset and the sysctls a lab could be tempted to
change must be identical; no lab shell, namespace, state file or process may remain.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import subprocess
import time

import pytest

from lab.agent.browser import chromium
from lab.net import procs
from lab.core.names import SHELL_MARK, run_dir

SYSCTL_GLOBS = [
    "/proc/sys/net/ipv4/ip_forward",
    "/proc/sys/net/ipv4/conf/*/forwarding",
    "/proc/sys/net/ipv4/conf/*/rp_filter",
    "/proc/sys/net/ipv6/conf/all/forwarding",
    "/proc/sys/net/ipv6/conf/*/disable_ipv6",
    "/proc/sys/net/ipv4/ip_local_port_range",
    "/proc/sys/net/bridge/*",
    "/proc/sys/net/netfilter/nf_conntrack_udp_timeout*",
]


def _run(*cmd: str) -> str:
    return subprocess.run(cmd, capture_output=True, text=True).stdout


def _json(*cmd: str):
    text = _run(*cmd)
    return json.loads(text) if text.strip() else []


def root_snapshot() -> dict:
    """The root namespace's network configuration (run from the root namespace)."""
    links = _json("ip", "-j", "-d", "link", "show")
    for link in links:
        link.pop("stats64", None)
    sysctls = {}
    for pattern in SYSCTL_GLOBS:
        for path in sorted(glob.glob(pattern)):
            try:
                sysctls[path] = open(path).read().strip()
            except OSError:
                pass
    return {
        "links": links,
        "addrs": _json("ip", "-j", "addr", "show"),
        "routes4": _json("ip", "-j", "-4", "route", "show", "table", "all"),
        "routes6": [r for r in _json("ip", "-j", "-6", "route", "show", "table", "all") if "expires" not in r],
        "rules": _json("ip", "-j", "rule", "show"),
        "nft": _run("nft", "list", "ruleset"),
        "netns_named": _run("ip", "netns", "list"),
        "sysctls": sysctls,
    }


def parallel_worker() -> str:
    """The pytest-xdist worker this process is ('gw0' ...), '' when the suite runs serially."""
    return os.environ.get("PYTEST_XDIST_WORKER", "")


def _worker_of(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            for item in f.read().split(b"\0"):
                if item.startswith(b"PYTEST_XDIST_WORKER="):
                    return item[20:].decode(errors="replace")
    except OSError:
        pass
    return ""


def _ours(p: procs.Proc) -> bool:
    """Is ``p`` this test process's to check? Run serially, every process is. On a parallel
    worker, those that inherited its PYTEST_XDIST_WORKER are (every process of the labs its
    tests start, whatever their run directory): the other workers' labs, running at the same
    time, are theirs to check."""
    return not parallel_worker() or _worker_of(p.pid) == parallel_worker()


def netns_in_use() -> set[int]:
    return {p.netns for p in procs.scan() if _ours(p)}


def lab_shells() -> list[procs.Proc]:
    return [p for p in procs.scan() if p.argv and p.argv[-1].startswith(SHELL_MARK) and _ours(p)]


def lab_state() -> tuple[set[int], set[str]]:
    """The lab shells' pids and the run directory's files now: what a module's lab, built
    before a test, holds (tests/netem shares one lab between its tests)."""
    d = run_dir()
    return {p.pid for p in lab_shells()}, set(os.listdir(d)) if d.is_dir() else set()


def leftovers(namespaces_before: set[int], before: tuple[set[int], set[str]] = (set(), set()),
              wait: float = 3.0) -> list[str]:
    """What labs left: shells, state files, run dirs, namespaces not there before."""
    deadline = time.monotonic() + wait
    while True:
        found = []
        shells = [p for p in lab_shells() if p.pid not in before[0]]
        if shells:
            found.append(f"lab shells still running: {[p.argv[-1] for p in shells]}")
        d = run_dir()
        files = set(os.listdir(d)) - before[1] if d.is_dir() else set()
        if files:
            found.append(f"files left in {d}: {sorted(files)}")
        new_ns = netns_in_use() - namespaces_before
        if new_ns:
            holders = [(p.pid, " ".join(p.argv)[:60]) for p in procs.scan() if p.netns in new_ns and _ours(p)]
            found.append(f"{len(new_ns)} network namespaces still held by {holders}")
        if not found or time.monotonic() > deadline:
            return found
        time.sleep(0.1)


def diff(before: dict, after: dict) -> list[str]:
    return [k for k in before if before[k] != after.get(k)]


def free_port() -> int:
    """A port free for both UDP and TCP on 127.0.0.1 (loopback servers of the tests)."""
    import socket
    for _ in range(100):
        t = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        t.bind(("127.0.0.1", 0))
        port = t.getsockname()[1]
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            u.bind(("127.0.0.1", port))
        except OSError:
            continue
        finally:
            t.close()
            u.close()
        return port
    raise RuntimeError("no free port")


def stop(proc: subprocess.Popen, grace: float = 5.0) -> None:
    """End a server a test started: SIGTERM, then SIGKILL after ``grace`` seconds."""
    proc.terminate()
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def check_golden(golden, text: str) -> None:
    """``text`` must equal the golden file; ICELAB_UPDATE_GOLDEN=1 rewrites it (review the diff).
    A golden file that is not there fails: writing it and passing would bless any message."""
    if os.environ.get("ICELAB_UPDATE_GOLDEN") == "1":
        golden.write_text(text)
    elif not golden.exists():
        pytest.fail(f"no golden file {golden}; review the message below, then write it with "
                    f"ICELAB_UPDATE_GOLDEN=1\n{text}")
    assert text == golden.read_text()


#: programs of the optional parts (`sudo make setup` installs them all): the Debian package of each
OPTIONAL_PROGRAMS = {"turnserver": "coturn", "turnutils_uclient": "coturn", "turnutils_peer": "coturn",
                     "turnutils_stunclient": "coturn", "chromium": "chromium"}


def optional_part_missing(what: str) -> None:
    """A test cannot run because an optional part is absent: it skips, saying which part and
    how to get it; under CI (CI set: CI installs everything) that is a failure instead."""
    reason = f"{what} (optional; 'sudo make setup' installs it) is not installed"
    if os.environ.get("CI", "").lower() not in ("", "0", "false"):
        pytest.fail(f"{reason}: CI installs every optional part, so this test must run")
    pytest.skip(reason)


def require(program: str) -> str:
    """The path of an optional program (see OPTIONAL_PROGRAMS), or skip (fail under CI)."""
    found = chromium() if program == "chromium" else shutil.which(program)
    if found is None:
        optional_part_missing(f"{program} (package {OPTIONAL_PROGRAMS.get(program, program)})")
    return found
