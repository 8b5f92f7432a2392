"""`icelab sweep --shard K/N`: the grid split the same way on every machine, and `icelab merge`
putting the shards back into the sweep an unsharded run writes (json, csv, md, plots)."""

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

from lab.core.errors import UsageError
from lab.report import sweep as sweep_report
from lab.report.merge import merge_sweep_folders, sweep_shards
from lab.scenario import sweep as sw

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
SWEEP = HERE / "sweep" / "sweep-call.yaml"


def test_shards_interleave_and_cover_the_grid_once():
    assert sw.shard_indices(7, 1, 3) == [0, 3, 6]
    assert sw.shard_indices(7, 3, 3) == [2, 5]
    for count in (1, 2, 5, 20):
        for n in (1, 2, 3, 4, 30):
            parts = [sw.shard_indices(count, k, n) for k in range(1, n + 1)]
            assert sorted(sum(parts, [])) == list(range(count))
            assert max(map(len, parts)) - min(map(len, parts)) <= 1


def _sweep(shard=None) -> sw.Sweep:
    """A 2 x 3 sweep with made-up measurements, or shard (K, N) of it: what run_sweep returns."""
    params = sw.parse_params(["link.delay=0ms,100ms", "link.loss=0%,5%,20%"])
    points = []
    for i, values in enumerate(sw.grid(params)):
        labels = {p.field: p.label(values[p.field]) for p in params}
        ok = i < 4
        points.append(sw.Point(values, labels, "pass" if ok else "fail", "talking" if ok else "failed",
                               None if ok else "ice_collection_timeout", 0.01 * i, 0.5 + i if ok else None,
                               0.1 if ok else None, None if ok else 8.0, 0.01 * i if ok else None, 0.002, 0.2,
                               wall=3.0 + i))
    whole = sw.Sweep("s", "s.yaml", ("edge", "isp"), "both", "agent1", params, points, 33.0, "2026-12-07 02:00 UTC")
    if shard:
        whole.points = [points[i] for i in sw.shard_indices(len(points), *shard)]
        whole.shard, whole.wall = shard, 10.0 + shard[0]
    return whole


def test_merged_shards_write_what_the_unsharded_sweep_writes(tmp_path):
    whole = _sweep()
    for k in (1, 2, 3):
        d = sweep_report.write(sw.Sweep.from_dict(_sweep((k, 3)).to_dict()), tmp_path / f"s{k}")
        assert sorted(p.name for p in d.iterdir()) == ["sweep.json"]        # no plot of a partial grid
        assert sweep_shards(tmp_path / f"s{k}") == [d / "sweep.json"] == sweep_shards(d)
    (merged,) = merge_sweep_folders([tmp_path / "s3", tmp_path / "s1", tmp_path / "s2"], tmp_path / "merged")
    ref = sweep_report.write(whole, tmp_path / "whole")
    got = json.loads((merged / "sweep.json").read_text())
    want = json.loads((ref / "sweep.json").read_text())
    assert got.pop("wall_s") == 13.0                     # the longest shard: they ran side by side
    want.pop("wall_s")
    assert got == want
    assert (merged / "sweep.csv").read_bytes() == (ref / "sweep.csv").read_bytes()
    assert (merged / "sweep.md").read_text().split("\n")[4:] == (ref / "sweep.md").read_text().split("\n")[4:]
    assert all((merged / f"sweep.{e}").stat().st_size > 1000 for e in ("png", "svg"))
    with open(merged / "sweep.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["link.delay"] + "/" + r["link.loss"] for r in rows][:4] == ["0ms/0%", "0ms/5%", "0ms/20%", "100ms/0%"]
    assert rows[5]["error"] == "ice_collection_timeout" and rows[0]["error"] == "" and rows[0]["setup_s"] == "0.5"
    assert rows[1]["audio_loss"] == "0.01" and rows[5]["audio_loss"] == ""


def _write(tmp_path, name, s):
    return sweep_report.write(s, tmp_path / name).parent


def test_a_missing_doubled_or_foreign_shard_is_refused(tmp_path):
    s1, s2 = _write(tmp_path, "a", _sweep((1, 2))), _write(tmp_path, "b", _sweep((2, 2)))
    with pytest.raises(UsageError, match="shards? 2/2 of the sweep of s missing"):
        merge_sweep_folders([s1], tmp_path / "out")
    with pytest.raises(UsageError, match="shard 1/2 is in both"):
        merge_sweep_folders([s1, s1, s2], tmp_path / "out")
    other = _write(tmp_path, "c", _sweep((1, 3)))
    with pytest.raises(UsageError, match="shard 1/3"):
        merge_sweep_folders([s1, s2, other], tmp_path / "out")
    short = _sweep((2, 2))
    short.points.pop()
    with pytest.raises(UsageError, match="stopped before it finished"):
        merge_sweep_folders([s1, _write(tmp_path, "d", short)], tmp_path / "out")
    foreign = _sweep((2, 2))
    foreign.params = sw.parse_params(["link.delay=0ms,100ms", "link.loss=0%,5%,30%"])
    with pytest.raises(UsageError, match="merge the shards of one sweep at a time"):
        merge_sweep_folders([s1, _write(tmp_path, "e", foreign)], tmp_path / "out")
    assert sweep_shards(tmp_path / "nothing") == []


def test_a_bad_shard_is_a_usage_error():
    r = subprocess.run([sys.executable, "-m", "lab.cli", "sweep", str(SWEEP), "--shard", "3/2"],
                       capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert r.returncode == 2 and "--shard '3/2'" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.root
def test_two_sweep_shards_at_once_merge_into_the_unsharded_grid(tmp_path):
    py = [sys.executable, "-m", "lab.cli", "sweep", str(SWEEP), "--param", "link.delay=0ms,40ms,80ms", "--json"]
    whole = subprocess.run(py + ["-o", str(tmp_path / "all")], capture_output=True, text=True, cwd=ROOT,
                           timeout=300)
    assert whole.returncode == 0, whole.stderr[-3000:]
    shards = [subprocess.Popen(py + ["--shard", f"{k}/2", "-o", str(tmp_path / f"s{k}")], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, cwd=ROOT) for k in (1, 2)]
    outs = [p.communicate(timeout=300) for p in shards]
    for k, (o, e) in enumerate(outs, 1):
        assert shards[k - 1].returncode == 0 and f"shard {k}/2: " in e, e[-3000:]
    assert [[p["labels"]["delay"] for p in json.loads(o)["points"]] for o, _ in outs] == [["0ms", "80ms"], ["40ms"]]
    m = subprocess.run([sys.executable, "-m", "lab.cli", "merge", str(tmp_path / "s1"), str(tmp_path / "s2"),
                        "-o", str(tmp_path / "merged")], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert m.returncode == 0, m.stderr[-3000:]
    a, b = tmp_path / "all" / "sweep-sweep-call", tmp_path / "merged" / "sweep-sweep-call"
    assert sorted(p.name for p in a.iterdir()) == sorted(p.name for p in b.iterdir())
    got, want = (json.loads((d / "sweep.json").read_text()) for d in (b, a))
    assert {k: v for k, v in got.items() if k not in ("points", "wall_s", "date")} == \
           {k: v for k, v in want.items() if k not in ("points", "wall_s", "date")}
    keep = ("labels", "values", "outcome", "error", "verdict")
    assert [{k: p[k] for k in keep} for p in got["points"]] == [{k: p[k] for k in keep} for p in want["points"]]
    # two round trips to TURN before the first relay candidate: each point kept its own delay
    for g, w in zip(got["points"], want["points"]):
        assert g["first_candidate"] == pytest.approx(w["first_candidate"], abs=0.1)
    rows = [list(csv.reader(open(d / "sweep.csv", newline=""))) for d in (b, a)]
    assert [r[:3] + r[-1:] for r in rows[0]] == [r[:3] + r[-1:] for r in rows[1]]


def test_points_share_a_lab_only_where_a_run_leaves_no_state_behind():
    from lab.scenario.load import load_scenario
    assert sw.reusable(load_scenario(str(SWEEP))) is None
    assert sw.reusable(load_scenario(str(ROOT / "scenarios" / "rtt250-loss5.yaml"))) is None
    assert "probe" in sw.reusable(load_scenario(str(ROOT / "scenarios" / "udp3478-open.yaml")))
    assert "(nat)" in sw.reusable(load_scenario(str(ROOT / "scenarios" / "peak-hour-small-pool.yaml")))
    assert "vpn" in sw.reusable(load_scenario(str(ROOT / "scenarios" / "vpn-split-tcp-lossy.yaml")))
    assert "vdi" in sw.reusable(load_scenario(str(ROOT / "scenarios" / "vdi-redirected-home.yaml")))


@pytest.mark.root
def test_points_that_share_a_lab_find_its_links_as_built(tmp_path):
    """Each point cuts the uplink after its call: the next point's call, in the same lab, talks."""
    from lab.scenario.load import load_scenario
    scenario = HERE / "sweep" / "sweep-restore.yaml"
    assert sw.reusable(load_scenario(str(scenario))) is None
    r = subprocess.run([sys.executable, "-m", "lab.cli", "sweep", str(scenario), "--param", "link.delay=0ms,10ms,20ms",
                        "--name", "sweep-restore", "--json", "-o", ""], capture_output=True, text=True, cwd=ROOT,
                       timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert [p["outcome"] for p in json.loads(r.stdout)["points"]] == ["talking"] * 3, r.stdout[-3000:]
