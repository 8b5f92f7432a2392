"""The layer contracts (pyproject.toml, [tool.importlinter]) hold, and they are live: an
upward import or a cycle added to a copy of the tree breaks them."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LINT = Path(sys.executable).with_name("lint-imports")


def lint(tree: Path) -> subprocess.CompletedProcess:
    # a fresh grimp cache per tree: a cached graph of the real tree must not answer for the copy
    return subprocess.run([str(LINT), "--config", str(tree / "pyproject.toml"), "--no-cache"],
                          cwd=tree, capture_output=True, text=True, timeout=120,
                          env={"PYTHONPATH": str(tree), "PATH": "/usr/bin:/bin"})


def copy_tree(tmp_path: Path) -> Path:
    tree = tmp_path / "tree"
    shutil.copytree(ROOT / "lab", tree / "lab", ignore=shutil.ignore_patterns("__pycache__", "web"))
    shutil.copy(ROOT / "pyproject.toml", tree / "pyproject.toml")
    return tree


def test_the_contracts_are_kept():
    r = lint(ROOT)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "BROKEN" not in r.stdout


@pytest.mark.parametrize("module, line, broken", [
    # the model importing the network layer: what made `icelab validate` load Mininet
    ("lab/model/topology.py", "import lab.net.network", "layers"),
    # the leaf importing anything of the lab
    ("lab/core/errors.py", "import lab.model", "layers"),
    # services and the agent are side by side: neither imports the other
    ("lab/services/turn/server.py", "import lab.agent", "layers"),
    # inside a function counts too: no dodging a cycle that way
    ("lab/scenario/expect.py", "def _later():\n    import lab.cli\n", "layers"),
])
def test_an_upward_import_breaks_them(tmp_path, module, line, broken):
    tree = copy_tree(tmp_path)
    target = tree / module
    target.write_text(target.read_text() + "\n" + line + "\n")
    r = lint(tree)
    assert r.returncode != 0, r.stdout
    assert f"{broken}" in r.stdout and "BROKEN" in r.stdout, r.stdout


def test_a_cycle_between_modules_breaks_them(tmp_path):
    tree = copy_tree(tmp_path)
    # lab.core.units imports nothing of lab.core.stun; make the two import each other
    for a, b in (("units", "stun"), ("stun", "units")):
        p = tree / "lab" / "core" / f"{a}.py"
        p.write_text(p.read_text() + f"\nfrom lab.core import {b}  # noqa\n")
    r = lint(tree)
    assert r.returncode != 0, r.stdout
    assert "no cycles" in r.stdout and "BROKEN" in r.stdout, r.stdout
