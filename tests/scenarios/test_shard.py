"""CI fan-out: `verify --shard K/N` splits a set the same way on every machine, balanced by the
last measured durations; `merge` puts the shards' results back into one set."""

import csv
import json
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from lab.core.errors import UsageError
from lab.report.merge import merge
from lab.scenario import shard

ROOT = Path(__file__).resolve().parents[2]
QUICK = [f"tests/scenarios/{n}.yaml" for n in ("probes", "inverted", "return-path")]


def test_the_split_is_deterministic_complete_and_balanced():
    durations = shard.load_durations(ROOT / "scenarios" / shard.DURATIONS)
    names = sorted(durations)
    for n in (1, 2, 3, 4, 30):
        parts = shard.split(names, n, durations)
        assert parts == shard.split(list(reversed(names)), n, durations)     # order given does not matter
        assert sorted(sum(parts, [])) == names
        loads = [shard.expected(p, durations) for p in parts if p]
        if n <= 4:
            # LPT: no shard runs longer than the average by more than the longest scenario
            assert max(loads) <= sum(loads) / n + max(durations.values())
    assert [len(p) for p in shard.split(["a", "b", "c"], 2, {})] == [2, 1]     # unmeasured: 20 s each


def test_shard_arguments_and_durations_files(tmp_path):
    assert shard.parse_shard("2/4") == (2, 4)
    for bad in ("0/2", "3/2", "1", "a/b"):
        with pytest.raises(UsageError):
            shard.parse_shard(bad)
    assert shard.load_durations(tmp_path / "none.json") == {}
    (tmp_path / "d.json").write_text("[1, 2]")
    with pytest.raises(UsageError):
        shard.load_durations(tmp_path / "d.json")
    assert shard.default_durations(["scenarios"]) == Path("scenarios") / ".durations.json"
    assert shard.default_durations(["tests/scenarios/probes.yaml"]) == Path("tests/scenarios/.durations.json")


def test_merging_a_folder_twice_or_a_folder_without_results_is_refused(tmp_path):
    with pytest.raises(UsageError, match="no summary.csv"):
        merge([tmp_path], tmp_path / "out")
    d = tmp_path / "s1"
    (d / "x").mkdir(parents=True)
    (d / "summary.csv").write_text("scenario,total_s\nx,1\n")
    (d / "x" / "result.json").write_text(json.dumps(
        {"scenario": "x", "file": "x.yaml", "lab": "l", "verdict": "pass", "error": None, "timings": {"total": 1},
         "checks": [], "observations": {}, "events": []}))
    assert [r.verdict for r in merge([d], tmp_path / "out")] == ["pass"]
    with pytest.raises(UsageError, match="'x' is in both"):
        merge([d, d], tmp_path / "out2")


def _verdicts(folder: Path) -> dict:
    with open(folder / "summary.csv", newline="") as f:
        return {r["scenario"]: (r["verdict"], r["checks_passed"], r["checks"]) for r in csv.DictReader(f)}


def _junit(path: Path) -> dict:
    return {c.get("name"): [e.tag for e in c] for c in ET.parse(path).getroot()}


@pytest.mark.root
def test_two_shards_at_once_merge_into_the_unsharded_verdicts(tmp_path):
    py = [sys.executable, "-m", "lab.cli", "verify", *QUICK]
    whole = subprocess.run(py + ["-o", str(tmp_path / "all"), "--junit", str(tmp_path / "all.xml")],
                           capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert whole.returncode == 1, whole.stderr[-2000:]          # 'inverted' fails on purpose
    shards = [subprocess.Popen(py + ["--shard", f"{k}/2", "--durations", str(tmp_path / "all"),
                                     "-o", str(tmp_path / f"s{k}")],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
              for k in (1, 2)]
    outs = [p.communicate(timeout=300) for p in shards]
    for k, (o, e) in enumerate(outs, 1):
        assert f"shard {k}/2: " in e, e[-2000:]
    ran = [set(_verdicts(tmp_path / f"s{k}")) for k in (1, 2)]
    assert ran[0] and ran[1] and not ran[0] & ran[1]
    m = subprocess.run([sys.executable, "-m", "lab.cli", "merge", str(tmp_path / "s1"), str(tmp_path / "s2"),
                        "-o", str(tmp_path / "merged"), "--junit", str(tmp_path / "merged.xml")],
                       capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert m.returncode == 1, m.stderr[-2000:]
    assert _verdicts(tmp_path / "merged") == _verdicts(tmp_path / "all")
    assert _junit(tmp_path / "merged.xml") == _junit(tmp_path / "all.xml")
    assert set(json.loads((tmp_path / "merged" / "durations.json").read_text())) == set(_verdicts(tmp_path / "all"))
    page = (tmp_path / "merged" / "index.html").read_text()
    assert all(f"{n}/report.html" in page for n in _verdicts(tmp_path / "all"))
    assert all((tmp_path / "merged" / n / "report.html").is_file() for n in _verdicts(tmp_path / "all"))


class _FakeRun:
    """A child `icelab run` that answers at once and notes the order the children started in."""

    started: list[str] = []

    def __init__(self, argv, **kw):
        self.file = argv[argv.index("run") + 1]
        _FakeRun.started.append(self.file)

    def communicate(self):
        name = Path(self.file).stem
        return json.dumps([{"scenario": name, "lab": "l", "verdict": "pass", "error": None, "timings": {"total": 1},
                            "checks": [], "observations": {}, "events": []}]), ""


def test_parallel_verify_starts_the_longest_first_and_reports_in_the_order_given(monkeypatch):
    from types import SimpleNamespace

    from lab.cli import runs
    monkeypatch.setattr(runs.subprocess, "Popen", _FakeRun)
    names = ["a", "b", "c", "d"]
    set_ = [SimpleNamespace(name=n, file=f"{n}.yaml", topology=SimpleNamespace(name="office")) for n in names]
    durations = {"a": 5.0, "b": 40.0, "d": 30.0}                 # c unmeasured: shard.ESTIMATE (20 s)
    assert [s.name for s in runs.longest_first(set_, durations)] == ["b", "d", "c", "a"]
    _FakeRun.started = []
    results = runs.run_parallel(set_, 1, None, None, durations=durations)
    assert _FakeRun.started == ["b.yaml", "d.yaml", "c.yaml", "a.yaml"]
    assert [r.scenario.name for r in results] == names
    _FakeRun.started = []
    runs.run_parallel(set_, 1, None, None)                      # no durations: the order given
    assert _FakeRun.started == ["a.yaml", "b.yaml", "c.yaml", "d.yaml"]
