"""The confusion matrix (docs/probe.md): the probe inside the agent of every network in
scenarios/, one lab each, probes only. Each broken network is named by findings that all
list its scenario; each fixed one is healthy (exit 0); 0 confusions. A few broken
scenarios are invisible to a 15 s network probe by nature (confusion.NOT_VISIBLE): the
probe must call them healthy rather than name something else. Every run, the healthy ones
and the one through a network that drops everything, ends within 15 s."""

import pytest
from confusion import NOT_VISIBLE, paths, row

pytestmark = pytest.mark.root


@pytest.mark.parametrize("scenario", [p.stem for p in paths()] + ["drop-everything"])
def test_probe_names_the_network(scenario, tmp_path):
    path = next(p for p in paths(tmp_path) if p.stem == scenario)
    r = row(path)
    assert r["error"] is None, r["error"]
    assert r["wall_s"] <= 15, f"the probe took {r['wall_s']} s"
    if r["variant"] == "fixed":
        assert r["verdict"] == "right" and r["exit_status"] == 0, r["findings"]
    elif scenario in NOT_VISIBLE:
        assert r["verdict"] in ("not visible", "right"), r["findings"]
    else:
        assert r["verdict"] == "right" and r["exit_status"] == 1, (r["findings"], r["result"]["findings"])
