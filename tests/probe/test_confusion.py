"""The confusion matrix (docs/probe.md): the probe inside the agent of every network in
scenarios/, one lab each, probes only. Each broken network is named by findings that all
list its scenario; each fixed one is healthy (exit 0); 0 confusions. Two broken scenarios
differ from their fixed twins in software only (signatures.UNSEEN): the probe must call
their networks healthy rather than name something else; one fixed scenario is fixed in the
softphone (signatures.SAME_NETWORK): the probe must name its broken twin's network there too. Every default run, the healthy
ones and the one through a network that drops everything, ends within 15 s; the NAT pair
runs with ``--idle 35`` (confusion.OPTIONS) and ends within 15 s of its silence."""

import pytest
from confusion import OPTIONS, paths, row

from lab.probe.signatures import SAME_NETWORK, UNSEEN

pytestmark = pytest.mark.root


@pytest.mark.parametrize("scenario", [p.stem for p in paths()] + ["drop-everything"])
def test_probe_names_the_network(scenario, tmp_path):
    path = next(p for p in paths(tmp_path) if p.stem == scenario)
    r = row(path)
    assert r["error"] is None, r["error"]
    extra = OPTIONS.get(scenario, [])
    idle = float(extra[extra.index("--idle") + 1]) if "--idle" in extra else 0.0
    assert r["wall_s"] <= 15 + idle, f"the probe took {r['wall_s']} s"
    if scenario in SAME_NETWORK:       # fixed in the softphone: the twin's network, named as such
        assert r["verdict"] == "same network" and r["exit_status"] == 1, r["findings"]
    elif r["variant"] == "fixed":
        assert r["verdict"] == "right" and r["exit_status"] == 0, r["findings"]
    elif scenario in UNSEEN:
        assert r["verdict"] == "cannot be seen" and r["exit_status"] == 0, r["findings"]
    else:
        assert r["verdict"] == "right" and r["exit_status"] == 1, (r["findings"], r["result"]["findings"])
