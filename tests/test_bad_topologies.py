"""The corpus of broken topologies (tests/bad/*.yaml) and the messages people get for them.

Each file's first line says what is wrong with it; its golden file (same name, .txt) holds
every problem exactly as `icelab validate` prints it (file:line: path: message, then the
hint). A change to a message is a change people see: review the diff, then regenerate with
ICELAB_UPDATE_GOLDEN=1 pytest tests/test_bad_topologies.py.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from lab.model import InputError, load_topology

ROOT = Path(__file__).resolve().parent.parent
BAD = sorted((ROOT / "tests/bad").glob("*.yaml"))
UPDATE = os.environ.get("ICELAB_UPDATE_GOLDEN") == "1"


def test_the_corpus_is_large_enough():
    assert len(BAD) >= 30


@pytest.mark.parametrize("path", BAD, ids=[p.stem for p in BAD])
def test_golden_message(path, monkeypatch):
    monkeypatch.chdir(ROOT)
    rel = path.relative_to(ROOT)
    with pytest.raises(InputError) as info:
        load_topology(rel)
    problems = info.value.problems
    assert problems, "an InputError always carries its problems"
    for p in problems:
        assert p.file == str(rel)
        assert p.message and not p.message.startswith("Traceback")
    text = "\n".join(str(p) for p in problems) + "\n"
    golden = path.with_suffix(".txt")
    if UPDATE or not golden.exists():
        golden.write_text(text)
    assert text == golden.read_text()


def test_the_cli_reports_the_whole_corpus_with_exit_2_and_no_traceback():
    r = subprocess.run([sys.executable, "-m", "lab.cli", "validate", *[str(p.relative_to(ROOT)) for p in BAD]],
                       capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
    for p in BAD:
        assert str(p.relative_to(ROOT)) in r.stderr, f"{p.name} is not reported"
    assert r.stdout.strip() == "", "no broken file may be reported as valid"
