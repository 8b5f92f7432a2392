"""The README run as written: its command blocks, in order, as root, in a fresh clone.

The clone's `make path` puts `icelab` on PATH as `make setup` does (a wrapper around the
clone, with this virtualenv's packages: the clone gets no virtualenv of its own, which would
take minutes and the network). `sudo` runs the command as it is (we are root already, and
sudo, where installed, would reset PATH to its secure_path). Every line runs except the ones
in SKIPPED, each with its reason. The clone is of the committed tree (HEAD).
"""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest


ROOT = Path(__file__).resolve().parent.parent

#: lines not run (matched by their start), and why
SKIPPED = {
    "sudo make demo": "runs the whole scenario set (minutes): CI's demo job runs it",
    "sudo make test": "runs this test suite, this test included",
    "sudo icelab sweep": "a grid of 9 runs takes minutes: tests/scenarios/test_sweep.py runs sweeps",
}
LABS = ("office", "office-fw", "office-nat")


def command_lines(readme: str) -> list[str]:
    """Every line of every ```sh block, in order."""
    lines = []
    for block in re.findall(r"```sh\n(.*?)```", readme, re.S):
        lines += [line for line in block.splitlines() if line.strip()]
    return lines


def test_every_skipped_line_is_still_in_the_readme():
    lines = command_lines((ROOT / "README.md").read_text())
    for start in SKIPPED:
        assert any(line.startswith(start) for line in lines), f"SKIPPED names '{start}', no longer in the README"


@pytest.mark.root
def test_the_readme_runs_as_written_in_a_fresh_clone(tmp_path):
    clone = tmp_path / "icelab"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
    venv = Path(sys.executable).parent.parent
    bindir = tmp_path / "bin"
    subprocess.run(["make", "-s", "path", f"BINDIR={bindir}", f"VENV={venv}"], cwd=clone, check=True)
    assert (bindir / "icelab").exists(), "make path did not put icelab on PATH"
    lines = command_lines((clone / "README.md").read_text())
    run = [line for line in lines if not any(line.startswith(s) for s in SKIPPED)]
    assert len(run) >= 15, run
    script = "set -ex\nsudo() { \"$@\"; }\n" + "\n".join(run) + "\n"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PATH"] = f"{bindir}:{env['PATH']}"
    # into files, not pipes: the labs started with '&' keep what they inherit open until they stop
    out, err = tmp_path / "stdout", tmp_path / "stderr"
    try:
        with open(out, "w") as fo, open(err, "w") as fe:
            rc = subprocess.run(["bash", "-c", script], cwd=clone, env=env, stdout=fo, stderr=fe,
                                timeout=600).returncode
    finally:
        for lab in LABS:       # only if the tour stopped half-way
            subprocess.run([str(bindir / "icelab"), "down", lab], capture_output=True, env=env)
    stdout, stderr = out.read_text(), err.read_text()
    assert rc == 0, stdout[-3000:] + stderr[-5000:]
    assert "Traceback" not in stderr
    assert "3 packets transmitted, 3 received" in stdout           # exec ... ping -c 3 ended
    assert "lab 'office' is down" in stderr
    # what the tour writes goes to out/ (ignored) or /tmp, never into the checkout
    status = subprocess.run(["git", "status", "--porcelain"], cwd=clone, capture_output=True, text=True).stdout
    assert status == "", status
    assert (clone / "out/office.svg").exists() and (clone / "out/probes").is_dir()
