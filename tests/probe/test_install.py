"""``pip install`` of the project on a machine without Mininet gives a working ``icelab
probe``; the lab commands then say what they need (exit 1, a hint, no traceback).

A fresh virtualenv (no system site-packages, so no Mininet), this checkout installed into
it with ``pip install --no-deps`` (its build backend, setuptools, comes from pip's
configured index, as for any user: on the test machines a local mirror), and its other
dependencies, which ``pip install`` would bring, linked in from the running interpreter's
environment (no download) -- all but Mininet, now the ``lab`` extra."""

import json
import shutil
import subprocess
import sys
import venv
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import responder  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
#: left out of the running environment's packages: Mininet (the ``lab`` extra) and this
#: project's own editable install
LEFT_OUT = ("mininet", "icelab", "__editable__", "_icelab")


def site_packages(python: Path) -> Path:
    out = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                         capture_output=True, text=True, check=True)
    return Path(out.stdout.strip())


@pytest.fixture(scope="module")
def no_mininet(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("install")
    src = tmp / "src"
    # the checkout's files only (no .venv, caches or egg-info in the way of the build)
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "pyproject.toml", "README.md", "lab"],
                           cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    for f in files:
        if (ROOT / f).is_file():
            (src / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / f, src / f)
    env = tmp / "venv"
    venv.EnvBuilder(with_pip=False, system_site_packages=False).create(env)
    py = env / "bin" / "python"
    r = subprocess.run([sys.executable, "-m", "pip", "--disable-pip-version-check", "-q", "--python", str(py),
                        "install", "--no-deps", str(src)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    deps = tmp / "deps"
    deps.mkdir()
    for entry in site_packages(Path(sys.executable)).iterdir():
        if not entry.name.lower().startswith(LEFT_OUT) and entry.suffix != ".pth":
            (deps / entry.name).symlink_to(entry)
    (site_packages(py) / "deps.pth").write_text(f"{deps}\n")
    return env


def clean_env(env: Path) -> dict:
    """No PYTHONPATH: the installed copy runs, not this checkout."""
    return {"PATH": f"{env / 'bin'}:/usr/bin:/bin", "HOME": str(env)}


def run(env: Path, *argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(env / "bin" / "icelab"), *argv], capture_output=True, text=True, timeout=60,
                          cwd=env, env=clean_env(env))


def test_the_fresh_environment_has_no_mininet(no_mininet):
    py = str(no_mininet / "bin" / "python")
    r = subprocess.run([py, "-c", "import mininet"], capture_output=True, text=True, env=clean_env(no_mininet))
    assert r.returncode == 1 and "No module named 'mininet'" in r.stderr
    r = subprocess.run([py, "-c", "import lab; print(lab.__file__)"], capture_output=True, text=True,
                       cwd=no_mininet, env=clean_env(no_mininet))
    assert str(no_mininet) in r.stdout, "the installed copy, not this checkout"


def test_probe_help(no_mininet):
    r = run(no_mininet, "probe", "--help")
    assert r.returncode == 0, r.stderr
    assert "--media-info" in r.stdout and "--turn" in r.stdout


def test_probe_runs_against_a_local_responder(no_mininet):
    s = responder.start()
    try:
        r = run(no_mininet, "probe", "--turn", f"127.0.0.1:{s.getsockname()[1]}", "--json")
    finally:
        s.close()
    assert r.returncode == 0, r.stdout[-1500:] + r.stderr[-1500:]
    result = json.loads(r.stdout)
    assert result["verdict"] == "healthy"
    assert result["measurements"]["stun"]["replies"] == result["measurements"]["stun"]["sent"] > 0


@pytest.mark.parametrize("argv", [["up", "topologies/office-nat.yaml"], ["run", "scenarios/udp3478-blocked.yaml"],
                                  ["clean"]])
def test_lab_commands_say_they_need_mininet(no_mininet, argv):
    for d in ("topologies", "scenarios"):
        shutil.copytree(ROOT / d, no_mininet / d, dirs_exist_ok=True)
    r = run(no_mininet, *argv)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "needs Mininet" in r.stderr and "hint:" in r.stderr and "sudo make setup" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr


def test_doctor_names_mininet_missing(no_mininet):
    """``icelab doctor`` imports no Mininet itself: it lists it among what labs need."""
    r = run(no_mininet, "doctor")
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
    row = next(line for line in r.stdout.splitlines() if "python: mininet" in line)
    assert "missing" in row and "not installed" in row
