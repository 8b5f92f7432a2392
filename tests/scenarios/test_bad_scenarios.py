"""Broken scenarios (tests/scenarios/bad/*.yaml) and the messages people get for them.

Each file's first line says what is wrong; its golden file (.txt) holds every problem as
`icelab run` prints it. Regenerate after reviewing a change with
ICELAB_UPDATE_GOLDEN=1 pytest tests/scenarios/test_bad_scenarios.py.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from lab.model import InputError
from support import check_golden
from lab.scenario.load import load_scenario

ROOT = Path(__file__).resolve().parents[2]
BAD = sorted((ROOT / "tests/scenarios/bad").glob("*.yaml"))


def test_the_corpus_is_large_enough():
    assert len(BAD) >= 20


@pytest.mark.parametrize("path", BAD, ids=[p.stem for p in BAD])
def test_golden_message(path, monkeypatch):
    monkeypatch.chdir(ROOT)
    with pytest.raises(InputError) as info:
        load_scenario(path.relative_to(ROOT))
    text = "\n".join(str(p) for p in info.value.problems) + "\n"
    golden = path.with_suffix(".txt")
    check_golden(golden, text)


def test_run_refuses_the_corpus_with_exit_2_before_building_anything():
    r = subprocess.run([sys.executable, "-m", "lab.cli", "run", "-o", "", *[str(p.relative_to(ROOT)) for p in BAD]],
                       capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr and "nothing was built" in r.stderr
    for p in BAD:
        assert str(p.relative_to(ROOT)) in r.stderr


def test_a_folder_given_as_the_topology_is_called_a_folder(monkeypatch):
    monkeypatch.chdir(ROOT)
    with pytest.raises(InputError) as info:
        load_scenario("tests/scenarios/bad/69-topology-is-a-folder.yaml")
    (p,) = info.value.problems
    assert "is a folder" in p.message and "not found" not in p.message
    assert p.path == "topology" and p.line == 3


def test_an_empty_scenario_gets_the_scenario_s_hint_not_the_topology_s(monkeypatch):
    monkeypatch.chdir(ROOT)
    with pytest.raises(InputError) as info:
        load_scenario("tests/scenarios/bad/70-empty-file.yaml")
    (p,) = info.value.problems
    assert p.message == "the file is empty"
    assert "scenario" in p.hint and "topology is a mapping" not in p.hint
