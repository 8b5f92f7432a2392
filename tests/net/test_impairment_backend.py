"""The impairment backend is chosen once, when the lab is built, and kept in its state file:
a lab built with the shaper keeps the shaper for every later change, whatever the kernel
or the environment say by then (no netem on this kernel: its availability is faked)."""

from __future__ import annotations

import json
import os
from types import SimpleNamespace

import pytest

from lab.model import load_topology
from lab.model.impairment import Impairment
from lab.net import shaping
from lab.net.shaper import backend as backends
from lab.net.shaper.netem import Netem
from lab.net.shaper.process import Shaper
from lab.net.state import LabState, NodeState, get


@pytest.fixture
def built(repo, tmp_path, monkeypatch):
    """A lab's state as a build leaves it, with both backends recording instead of acting."""
    monkeypatch.setenv("ICELAB_RUN_DIR", str(tmp_path))
    monkeypatch.delenv("ICELAB_SHAPER", raising=False)
    calls = []
    monkeypatch.setattr(Netem, "apply", lambda self, st, link, per_dir: calls.append(("netem", link, per_dir)))
    monkeypatch.setattr(Shaper, "apply", lambda self, st, link, per_dir: calls.append(("shaper", link, per_dir)))
    monkeypatch.setattr(Shaper, "start", lambda self, st: None)
    topo = load_topology(repo / "tests/topologies/shaped-pair.yaml")
    me = os.getpid()
    st = LabState(topo.name, topo.file, me, 0, topology=topo.to_dict(),
                  nodes={n: NodeState(me, 0, 0) for n in topo.nodes})
    st.save()
    return SimpleNamespace(network=SimpleNamespace(topo=topo, state=st), calls=calls, tmp=tmp_path)


def _netem(monkeypatch, available: bool):
    monkeypatch.setattr(shaping, "netem_available", lambda: (available, "faked by the test"))


def test_a_lab_built_with_the_shaper_keeps_it_when_netem_becomes_available(built, monkeypatch):
    _netem(monkeypatch, False)
    shaping.setup(built.network)
    assert built.calls == [("shaper", 0, {"a2b": Impairment(delay=0.01), "b2a": Impairment()})]
    on_disk = json.loads((built.tmp / "shaped.json").read_text())
    assert on_disk["impairment_backend"] == "shaper" == get("shaped").impairment_backend

    _netem(monkeypatch, True)                     # e.g. the module got loaded meanwhile
    assert shaping.backend().name == "netem"      # what a new lab would get
    shaping.set_impairment("shaped", "left", "right", Impairment(loss=0.02), "a2b")
    shaping.change_impairment("shaped", "right", "left", {"delay": "5ms"})
    assert [c[0] for c in built.calls] == ["shaper"] * 3
    assert built.calls[2] == ("shaper", 0, {"b2a": Impairment(delay=0.005), "a2b": Impairment(loss=0.02, delay=0.005)})
    assert isinstance(shaping.lab_backend("shaped"), Shaper)


def test_a_lab_built_with_netem_keeps_netem(built, monkeypatch):
    _netem(monkeypatch, True)
    shaping.setup(built.network)
    monkeypatch.setenv("ICELAB_SHAPER", "shaper")  # asked for later: a new lab's choice only
    shaping.set_impairment("shaped", "left", "right", Impairment(delay=0.2))
    assert [c[0] for c in built.calls] == ["netem", "netem"]
    assert get("shaped").impairment_backend == "netem"


def test_the_environment_chooses_at_build(built, monkeypatch):
    _netem(monkeypatch, True)
    monkeypatch.setenv("ICELAB_SHAPER", "shaper")
    shaping.setup(built.network)
    assert get("shaped").impairment_backend == "shaper"


def test_a_lab_without_impairments_still_records_its_backend(built, monkeypatch):
    _netem(monkeypatch, False)
    built.network.topo.links[0].impair = None
    shaping.setup(built.network)
    assert built.calls == [] and get("shaped").impairment_backend == "shaper"


def test_a_lab_that_could_not_choose_at_build_chooses_once_on_first_change(built, monkeypatch):
    _netem(monkeypatch, False)
    built.network.topo.links[0].impair = None
    monkeypatch.setenv("ICELAB_SHAPER", "netem")           # impossible here: nothing to shape yet, no error
    shaping.setup(built.network)
    assert get("shaped").impairment_backend is None
    monkeypatch.delenv("ICELAB_SHAPER")
    shaping.set_impairment("shaped", "left", "right", Impairment(delay=0.1))
    assert get("shaped").impairment_backend == "shaper"
    _netem(monkeypatch, True)
    shaping.set_impairment("shaped", "left", "right", Impairment(delay=0.2))
    assert [c[0] for c in built.calls] == ["shaper", "shaper"]


def test_a_build_that_needs_an_impossible_backend_fails(built, monkeypatch):
    _netem(monkeypatch, False)
    monkeypatch.setenv("ICELAB_SHAPER", "netem")
    with pytest.raises(shaping.ShapingError, match="ICELAB_SHAPER=netem but faked by the test"):
        shaping.setup(built.network)


def test_the_registry_names_both_backends_and_refuses_others():
    assert set(backends.REGISTRY) == {"netem", "shaper"}
    assert isinstance(backends.get("netem"), Netem)
    with pytest.raises(shaping.ShapingError, match="unknown impairment backend 'tbf': known are netem, shaper"):
        backends.get("tbf")


def test_whether_the_labs_backend_runs_is_asked_of_the_labs_backend(built, monkeypatch):
    _netem(monkeypatch, False)
    shaping.setup(built.network)
    monkeypatch.setattr("lab.net.shaper.process.answering", lambda lab, timeout=2.0: False)
    assert shaping.backend_running("shaped") is False
    _netem(monkeypatch, True)
    assert shaping.backend_running("shaped") is False      # still the shaper's lab
    st = get("shaped")
    st.impairment_backend = "netem"
    st.save()
    assert shaping.backend_running("shaped") is True
