"""A lab is its name within a run directory (ICELAB_RUN_DIR): two labs of the same name in two
run directories live side by side, and one's `down` or `icelab clean` leaves the other alone.
The suite's parallel workers rely on it (docs/testing.md): each has its own run directory,
and most tests build a lab named `office`."""

import os
import subprocess
import sys
import time

import pytest

from lab.net import procs
from lab.net.state import get

ICELAB = [sys.executable, "-m", "lab.cli"]
PAIR = "name: {name}\nnodes:\n  left: {{kind: host}}\n  right: {{kind: host}}\n" \
       "links:\n  - {{a: left, b: right, subnet: 10.78.0.0/30}}\n"


def test_a_process_belongs_to_the_run_directory_it_was_started_under(monkeypatch):
    default = procs.Proc(1, 1, (), "office", 0, "")
    worker = procs.Proc(2, 1, (), "office", 0, "/run/icelab-gw0")
    monkeypatch.delenv("ICELAB_RUN_DIR", raising=False)
    assert default.in_this_run_dir and not worker.in_this_run_dir
    monkeypatch.setenv("ICELAB_RUN_DIR", "/run/icelab-gw0")
    assert worker.in_this_run_dir and not default.in_this_run_dir


def test_scan_reads_the_lab_and_the_run_directory_from_the_environment(tmp_path):
    p = subprocess.Popen(["sleep", "60"], env=dict(os.environ, ICELAB_LAB="rdscan", ICELAB_RUN_DIR=str(tmp_path)))
    try:
        found = [q for q in procs.scan() if q.pid == p.pid]
        assert found and found[0].lab == "rdscan" and found[0].run_dir == str(tmp_path), found
    finally:
        p.kill()
        p.wait()


def _shells(name: str, where) -> list[procs.Proc]:
    return [p for p in procs.scan() if p.is_shell and p.lab == name and p.run_dir == str(where)]


@pytest.mark.root
def test_two_labs_of_one_name_in_two_run_directories(tmp_path, monkeypatch):
    topo = tmp_path / "pair.yaml"
    topo.write_text(PAIR.format(name="rdtwin"))
    dirs = [tmp_path / "run-a", tmp_path / "run-b"]
    ups = [subprocess.Popen([*ICELAB, "up", str(topo)], env=dict(os.environ, ICELAB_RUN_DIR=str(d)),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) for d in dirs]
    try:
        for d, up in zip(dirs, ups):
            monkeypatch.setenv("ICELAB_RUN_DIR", str(d))
            deadline = time.monotonic() + 60
            while not ((st := get("rdtwin")) and st.status == "running" and len(_shells("rdtwin", d)) == 2):
                assert up.poll() is None and time.monotonic() < deadline, up.stderr.read() if up.poll() else "slow"
                time.sleep(0.05)
        # down in run-a: run-b's lab keeps every shell; clean in run-a finds nothing of run-b's
        a = dict(os.environ, ICELAB_RUN_DIR=str(dirs[0]))
        r = subprocess.run([*ICELAB, "down", "rdtwin"], env=a, capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stdout + r.stderr
        assert ups[0].wait(30) == 130          # down stops it with SIGTERM, as Ctrl-C would
        r = subprocess.run([*ICELAB, "clean"], env=a, capture_output=True, text=True, timeout=60)
        assert r.stdout.strip() == "nothing to clean", r.stdout + r.stderr
        assert _shells("rdtwin", dirs[0]) == [] and len(_shells("rdtwin", dirs[1])) == 2
        assert ups[1].poll() is None
    finally:
        for d, up in zip(dirs, ups):
            if up.poll() is None:
                subprocess.run([*ICELAB, "down", "rdtwin"], env=dict(os.environ, ICELAB_RUN_DIR=str(d)),
                               capture_output=True, timeout=60)
                up.wait(30)
