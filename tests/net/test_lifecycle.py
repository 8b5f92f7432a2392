"""The lab's whole lifecycle through the command line, as users and CI drive it:
signals during build and run, `down`, SIGKILL followed by `clean`, and `clean` touching
nothing that is not a dead lab's."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lab.net import procs
from lab.net.state import get, run_dir
from synthetic import office_grid

pytestmark = pytest.mark.root

ICELAB = [sys.executable, "-m", "lab.cli"]


def icelab(*args, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([*ICELAB, *args], capture_output=True, text=True, timeout=60, **kw)


def start_up(path, name=None) -> subprocess.Popen:
    cmd = [*ICELAB, "up", str(path)] + (["--name", name] if name else [])
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_status(name, status, min_nodes=1, timeout=30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        st = get(name)
        if st is not None and st.status == status and len(st.nodes) >= min_nodes:
            return st
        time.sleep(0.02)
    raise AssertionError(f"lab {name} never reached status {status}")


def start_in_lab(lab: str, node: str) -> subprocess.Popen:
    """`icelab exec LAB NODE -- sleep 300` in the background, once it runs in the node."""
    p = subprocess.Popen([*ICELAB, "exec", lab, node, "--", "sleep", "300"], start_new_session=True)
    target = get(lab).nodes[node].netns
    deadline = time.monotonic() + 10
    while procs.netns_inode(p.pid) != target or procs.cmdline(p.pid)[:1] != ["sleep"]:
        assert time.monotonic() < deadline and p.poll() is None, "exec did not start"
        time.sleep(0.02)
    return p


@pytest.fixture
def grid(tmp_path) -> Path:
    """A 60-agent topology: its build takes long enough to be interrupted."""
    p = tmp_path / "grid.yaml"
    p.write_text(office_grid(60, name="sigbuild"))
    return p


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_signal_during_build_leaves_nothing(grid, sig):
    up = start_up(grid)
    try:
        # state is 'building' with nodes recorded: nodes and namespaces exist
        wait_status("sigbuild", "building", min_nodes=1)
        up.send_signal(sig)
        up.wait(timeout=30)
    finally:
        if up.poll() is None:
            up.kill()
            up.wait()
    assert get("sigbuild") is None


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_signal_while_running_leaves_nothing(repo, sig):
    up = start_up(repo / "topologies/agent-lan.yaml", name=f"sig{int(sig)}")
    try:
        wait_status(f"sig{int(sig)}", "running")
        # a process of the lab's own (a service, a capture) must go too
        ex = start_in_lab(f"sig{int(sig)}", "turn")
        up.send_signal(sig)
        assert up.wait(timeout=30) == 130        # interrupted, after its teardown
        ex.wait(timeout=10)
    finally:
        if up.poll() is None:
            up.kill()
            up.wait()
    assert "is down" in up.stderr.read()


def test_down_stops_a_running_lab(repo):
    up = start_up(repo / "topologies/agent-lan.yaml", name="downme")
    try:
        wait_status("downme", "running")
        r = icelab("down", "downme")
        assert r.returncode == 0, r.stderr
        assert up.wait(timeout=10) == 130        # down stops it with SIGTERM, as Ctrl-C would
    finally:
        if up.poll() is None:
            up.kill()
            up.wait()


def test_sigkill_then_clean_removes_exactly_the_dead_lab(repo, grid):
    survivor = start_up(repo / "topologies/agent-lan.yaml", name="survivor")
    victim = start_up(repo / "topologies/agent-lan.yaml", name="victim")
    # a namespace that is not icelab's: clean must not touch it
    foreign = subprocess.Popen(["unshare", "--net", "sleep", "300"])
    try:
        wait_status("survivor", "running")
        wait_status("victim", "running")
        orphan = start_in_lab("victim", "turn")
        victim.kill()
        victim.wait()
        # the dead lab's namespace lives on through the orphan; the state file remains
        st = get("victim")
        assert st is not None and not st.owner_alive()
        assert orphan.poll() is None
        status = json.loads(icelab("status", "--json").stdout)
        assert {s["name"]: s["status"] for s in status} == {"survivor": "running", "victim": "stale"}
        r = icelab("clean", "--dry-run")
        assert "would clean lab 'victim'" in r.stdout and "survivor" not in r.stdout
        r = icelab("clean")
        assert r.returncode == 0 and "cleaned lab 'victim'" in r.stdout, r.stdout + r.stderr
        assert orphan.wait(timeout=5) is not None
        assert get("victim") is None
        # untouched: the other lab, which still routes, and the foreign namespace
        assert foreign.poll() is None
        r = icelab("exec", "survivor", "agent1", "--", "ping", "-c1", "-W1", "203.0.113.2")
        assert r.returncode == 0, r.stdout + r.stderr
        assert icelab("clean").stdout.strip() == "nothing to clean"
    finally:
        foreign.kill()
        foreign.wait()
        for p in (survivor, victim):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                p.wait(timeout=30)


def test_sigkill_during_build_then_clean(grid):
    up = start_up(grid)
    wait_status("sigbuild", "building", min_nodes=10)
    up.kill()
    up.wait()
    r = icelab("clean")
    assert r.returncode == 0 and "cleaned lab 'sigbuild'" in r.stdout


def test_clean_finds_marked_processes_without_a_state_file(repo):
    up = start_up(repo / "topologies/agent-lan.yaml", name="nostate")
    try:
        st = wait_status("nostate", "running")
        orphan = start_in_lab("nostate", "media")
        up.kill()
        up.wait()
        st.path.unlink()                     # the state file is lost too
        assert "would clean lab 'nostate' (no state file" in icelab("clean", "--dry-run").stdout
        r = icelab("clean")
        # the orphan on media, and the lab's services: TURN on turn, the cloud on signalling
        # (lab/net/services.py)
        assert "cleaned lab 'nostate': 3 processes in 3 namespaces" in r.stdout, r.stdout
        assert orphan.wait(timeout=5) is not None
    finally:
        if up.poll() is None:
            up.kill()
            up.wait()
        subprocess.run([*ICELAB, "clean"], capture_output=True)


def test_exec_runs_inside_the_node_and_returns_its_status(repo):
    up = start_up(repo / "topologies/agent-lan.yaml", name="execlab")
    try:
        wait_status("execlab", "running")
        r = icelab("exec", "execlab", "edge", "--", "ip", "-4", "-o", "addr")
        assert "10.10.0.1/24" in r.stdout and "198.51.100.1/30" in r.stdout
        assert icelab("exec", "execlab", "agent1", "--", "sh", "-c", "exit 7").returncode == 7
        r = icelab("exec", "execlab", "agnet1", "--", "true")
        assert r.returncode == 2 and "did you mean 'agent1'" in r.stderr
        assert icelab("exec", "nolab", "agent1", "--", "true").returncode == 2
    finally:
        up.send_signal(signal.SIGINT)
        up.wait(timeout=30)


def _pair(tmp_path, name: str) -> Path:
    p = tmp_path / f"{name}.yaml"
    p.write_text(f"name: {name}\nnodes:\n  a: {{kind: host}}\n  b: {{kind: host}}\nlinks:\n  - {{a: a, b: b}}\n")
    return p


def test_up_of_a_lab_already_up_says_so_and_not_that_it_is_down(tmp_path):
    path = _pair(tmp_path, "twice")
    first = start_up(path)
    try:
        wait_status("twice", "running")
        r = icelab("up", str(path))
        assert r.returncode == 1, r.stderr
        assert "already up" in r.stderr
        assert "is down" not in r.stderr, r.stderr         # the first one is not: it still runs
        assert get("twice").status == "running"
    finally:
        first.send_signal(signal.SIGINT)
        first.wait(timeout=30)


def test_a_failed_start_says_it_did_not_start(tmp_path):
    """`ip` failing while the links are made: what was built is removed, and the message says
    the lab never came up rather than that it is down."""
    fake = tmp_path / "bin"
    fake.mkdir()
    # veths are made one by one (`ip link add`) or all at once (`ip -batch FILE`): both fail
    (fake / "ip").write_text("#!/bin/sh\ncase \"$*\" in *'link add'*|*-batch*) echo 'ip: fake failure' >&2; exit 2;; esac\n"
                             "exec /usr/sbin/ip \"$@\"\n")
    (fake / "ip").chmod(0o755)
    env = dict(os.environ, PATH=f"{fake}:{os.environ['PATH']}")
    try:
        r = icelab("up", str(_pair(tmp_path, "nostart")), env=env)
    finally:
        icelab("clean")          # a build that did not fail as it should would stay up: leave nothing
    assert r.returncode == 1, r.stderr
    assert "is down" not in r.stderr, r.stderr
    assert "lab 'nostart' did not start" in r.stderr and "error:" in r.stderr
    assert r.stderr.index("did not start") < r.stderr.index("error:")
    assert get("nostart") is None


def test_up_interrupted_while_it_builds_says_it_did_not_start(grid):
    up = start_up(grid)
    try:
        wait_status("sigbuild", "building", min_nodes=1)
        up.send_signal(signal.SIGINT)
        assert up.wait(timeout=30) == 130
    finally:
        if up.poll() is None:
            up.kill()
            up.wait()
    errs = up.stderr.read()
    assert "lab 'sigbuild' did not start (interrupted)" in errs and "is down" not in errs, errs


def test_sighup_during_check_tears_the_lab_down_and_exits_130(grid):
    """The terminal closed while `icelab check` builds: the half-built lab goes, exit 130."""
    p = subprocess.Popen([*ICELAB, "check", str(grid)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_status("sigbuild", "building", min_nodes=1)
        p.send_signal(signal.SIGHUP)
        assert p.wait(timeout=60) == 130, p.stderr.read()[-2000:]
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert get("sigbuild") is None
    assert "Traceback" not in p.stderr.read()


def test_sighup_during_verify_parallel_tears_every_worker_lab_down_and_exits_130(repo, tmp_path):
    """`verify --parallel` runs each scenario in a child `icelab run`: a SIGHUP to verify must
    reach them, so that each tears its lab down, instead of verify waiting for them to finish."""
    topo = repo / "topologies/agent-lan.yaml"
    for i in (1, 2):
        (tmp_path / f"slow{i}.yaml").write_text(
            f"name: slow{i}\ntopology: {topo}\ntimeline:\n"
            "  - {at: 60s, probe: {name: p, from: agent1, to: turn, proto: stun, port: 3478}}\n"
            "expect:\n  - {probe: p, reached: true}\n")
    p = subprocess.Popen([*ICELAB, "verify", "--parallel", "2", "-o", "", str(tmp_path)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path)
    labs = ["office-p0", "office-p1"]        # topology "office", worker slots 0 and 1
    try:
        for lab in labs:
            wait_status(lab, "running", timeout=60)
        t0 = time.monotonic()
        p.send_signal(signal.SIGHUP)
        assert p.wait(timeout=60) == 130, p.stderr.read()[-2000:]
        assert time.monotonic() - t0 < 30, "verify waited for its scenarios instead of stopping them"
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        for lab in labs:
            if get(lab) is not None:
                icelab("down", lab)
    for lab in labs:
        assert get(lab) is None, f"lab {lab} is still there"
    assert "Traceback" not in p.stderr.read()
