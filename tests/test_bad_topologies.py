"""The corpus of broken topologies (tests/bad/*.yaml) and the messages people get for them.

Each file's first line says what is wrong with it; its golden file (same name, .txt) holds
every problem exactly as `icelab validate` prints it (file:line: path: message, then the
hint). A change to a message is a change people see: review the diff, then regenerate with
ICELAB_UPDATE_GOLDEN=1 pytest tests/test_bad_topologies.py.
"""

import os
import subprocess
import sys
import time
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


# -- hostile files: each is refused quickly, with the file, the line and a hint ----------------
# They are generated here (a 50 MB file does not belong in the repository). The bound is what
# a person waiting for `icelab validate` should see; before the limits these took 87 s and
# 4 GB (an alias bomb), a RecursionError, a ReaderError traceback and 28 s (50 MB).

TIME_BOUND = 2.0


def _billion_laughs() -> str:
    lines = ['lol0: &l0 "lol"'] + [f"lol{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * 10) + "]" for i in range(1, 10)]
    return "name: bomb\n" + "\n".join(lines) + "\nnodes: {a: *l9}\n"


HOSTILE = {
    # name: (text, the line named, words the message must have, words the hint must have)
    "billion-laughs": (_billion_laughs, 7, "alias '*l4' repeats 11,111 values, which takes the document past 100,000",
                       "billion laughs"),
    "deep-flow": (lambda: "name: deep\nnodes: " + "[" * 5000 + "]" * 5000 + "\n", 2,
                  "lists and mappings are nested more than 64 deep", "brackets that are never closed"),
    "deep-block": (lambda: "name: deep\nnodes:\n" + "".join(" " * (i + 1) + f"k{i}:\n" for i in range(200)), 66,
                   "lists and mappings are nested more than 64 deep", "indentation that runs away"),
    "self-alias": (lambda: "name: loop\nnodes: &a {h1: [*a]}\n", 2, "alias '*a' is inside the value it names",
                   "a value cannot contain itself"),
    "nul-byte": (lambda: "name: t\nnodes:\n  h1: {kind: ho\x00st}\n", 3,
                 "the file holds a NUL byte (column 16), which YAML does not allow", "plain UTF-8 text"),
    "50-MB": (lambda: "name: big\nnodes: {}\n" + ("# " + "x" * 70 + "\n") * (50 * 1024 * 1024 // 73), 14366,
              "the file is too large (50.0 MB); icelab reads at most 1.0 MB", "is this the right file?"),
    "many-values": (lambda: "name: t\nnodes: [" + "0, " * 150_000 + "0]\n", 2,
                    "the document has more than 100,000 values", "a few kilobytes"),
}


@pytest.mark.parametrize("case", HOSTILE, ids=list(HOSTILE))
def test_hostile_yaml_is_refused_quickly_with_file_line_and_hint(case, tmp_path):
    make, line, message, hint = HOSTILE[case]
    path = tmp_path / f"{case}.yaml"
    path.write_text(make())
    start = time.monotonic()
    with pytest.raises(InputError) as info:
        load_topology(path)
    took = time.monotonic() - start
    [p] = info.value.problems
    assert (p.file, p.line) == (str(path), line)
    assert message in p.message and hint in p.hint
    assert took < TIME_BOUND, f"{case} took {took:.1f} s"


@pytest.mark.parametrize("case", ["billion-laughs", "nul-byte", "deep-flow"])
def test_the_cli_refuses_hostile_files_with_exit_2_and_no_traceback(case, tmp_path):
    path = tmp_path / f"{case}.yaml"
    path.write_text(HOSTILE[case][0]())
    r = subprocess.run([sys.executable, "-m", "lab.cli", "validate", str(path)],
                       capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert f"{path}:{HOSTILE[case][1]}:" in r.stderr and "hint:" in r.stderr


def test_scenarios_and_their_topologies_are_read_within_the_same_limits(tmp_path):
    from lab.scenario.load import load_scenario
    (tmp_path / "bomb.yaml").write_text(_billion_laughs())
    (tmp_path / "s.yaml").write_text("name: s\ntopology: bomb.yaml\n")
    (tmp_path / "deep.yaml").write_text("name: s\ntimeline: " + "[" * 5000 + "\n")
    start = time.monotonic()
    for scenario, file, line, message in (("s.yaml", "bomb.yaml", 7, "billion laughs"),
                                          ("deep.yaml", "deep.yaml", 2, "brackets that are never closed")):
        with pytest.raises(InputError) as info:
            load_scenario(tmp_path / scenario)
        assert [p for p in info.value.problems if (Path(p.file).name, p.line) == (file, line) and message in p.hint]
    assert time.monotonic() - start < 2 * TIME_BOUND


def test_files_within_the_limits_still_load(tmp_path):
    from lab.model.loader import load_yaml
    from synthetic import office_grid
    text = office_grid(1000, 50)           # about 85 kB, 7,000 values
    assert load_yaml("grid.yaml", text).data["name"] == "grid"
    shared = "name: t\ndefaults: &d {kind: host, role: agent}\nnodes:\n" + \
        "".join(f"  h{i}: {{<<: *d, zone: z}}\n" for i in range(200))
    doc = load_yaml("t.yaml", shared)
    assert doc.data["nodes"]["h199"] == {"kind": "host", "role": "agent", "zone": "z"}
    assert doc.line(("nodes", "h199")) == 203


# -- every problem at once, at scale ------------------------------------------------------------


def test_three_thousand_problems_are_all_reported_in_under_two_seconds(tmp_path):
    path = tmp_path / "many.yaml"
    path.write_text("name: many\nnodes:\n  r1: {kind: router}\n  lan1: {kind: lan}\n" +
                    "".join(f"  h{i}: {{kind: host}}\n" for i in range(3000)) + "links:\n  - {a: r1, b: lan1}\n")
    start = time.monotonic()
    with pytest.raises(InputError) as info:
        load_topology(path)
    text = "\n".join(str(p) for p in info.value.problems) + "\n"
    took = time.monotonic() - start
    assert len(info.value.problems) == 3000
    assert f"{path}:5: nodes.h0: host 'h0' has no links\n    hint: link it to a lan or a router\n" in text
    assert f"{path}:3004: nodes.h2999: host 'h2999' has no links\n" in text
    assert took < TIME_BOUND, f"took {took:.1f} s"
