"""`pytest -m "not root"` on a machine without the optional parts (coturn, Chromium): the tests
that need one skip and say which part and how to get it; under CI (CI=true, where `make setup`
installed everything) the same absence fails them, so that CI can never skip them silently."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
OPTIONAL = ("turnserver", "turnutils_uclient", "turnutils_peer", "turnutils_stunclient", "chromium",
            "chromium-browser")
NEEDING = [
    "tests/agent/test_gather.py::test_gathering_against_coturn",
    "tests/services/test_turn_server.py::test_turnutils_stunclient_gets_its_mapped_address",
    "tests/services/test_turn_hardening.py::test_coturn_serves_each_credential_kind",
    "tests/test_cli.py::test_doctor_lists_what_labs_need_and_names_what_is_missing",
]


@pytest.fixture(scope="module")
def path_without_optional_parts(tmp_path_factory) -> str:
    """A PATH with every program of this machine but coturn's and Chromium."""
    d = tmp_path_factory.mktemp("bin")
    for folder in os.environ["PATH"].split(os.pathsep):
        if not os.path.isdir(folder):
            continue
        for name in os.listdir(folder):
            target = os.path.join(folder, name)
            if name in OPTIONAL or (d / name).exists() or not os.access(target, os.X_OK):
                continue
            (d / name).symlink_to(target)
    return str(d)


def _pytest(path: str, ci: bool) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    env.update(PATH=path, PYTHONPATH=str(ROOT))
    if ci:
        env["CI"] = "true"
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", "-m", "not root",
                           *NEEDING], capture_output=True, text=True, cwd=ROOT, env=env, timeout=300)


def test_without_coturn_and_chromium_the_tests_that_need_them_skip_and_say_why(path_without_optional_parts):
    r = _pytest(path_without_optional_parts, ci=False)
    assert r.returncode == 0, r.stdout[-3000:]
    assert "failed" not in r.stdout and "error" not in r.stdout.lower().split("short test summary")[-1]
    assert "coturn" in r.stdout and "sudo make setup" in r.stdout, r.stdout[-3000:]
    assert " skipped" in r.stdout


def test_under_ci_their_absence_is_a_failure(path_without_optional_parts):
    r = _pytest(path_without_optional_parts, ci=True)
    assert r.returncode == 1, r.stdout[-3000:]
    assert "CI installs every optional part" in r.stdout, r.stdout[-3000:]
    assert "skipped" not in r.stdout
