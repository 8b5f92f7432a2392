import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))

from support import diff, lab_state, leftovers, netns_in_use, parallel_worker, root_snapshot  # noqa: E402

from lab.core.names import run_dir  # noqa: E402

# `make test` runs the suite in two passes (docs/testing.md): most tests on parallel
# pytest-xdist workers, then the tests marked `serial` alone. Each worker keeps its labs in a
# run directory of its own (/run/icelab-gw0 ...), inherited by every process of its labs:
# workers may then build labs of the same name at once (lab.net.procs: a lab is its name
# within a run directory), and each worker's host_untouched checks its own labs only.
if parallel_worker():
    os.environ["ICELAB_RUN_DIR"] = f"{run_dir()}-{parallel_worker()}"

#: tests that run alone, in `make test`'s serial pass (path or node id prefix: reason).
#: Timing precision that other tests' CPU use would blur, and tests that act on the whole host.
SERIAL = {
    "tests/net/test_shaping.py": "the shaper's delay, jitter and rate, measured to 0.2-1 ms",
    "tests/net/test_shaper_calibrate.py": "calibrates the shaper against the clock",
    "tests/scenarios/test_link_timing.py": "a link step takes effect within 50 ms",
    "tests/netem/test_netem.py": "netem's delay and jitter, measured (in user-mode Linux, 'make test-netem')",
    "tests/net/test_lifecycle.py": "SIGKILLs labs' owners and asserts `icelab clean`'s whole output; "
                                   "makes a namespace of its own",
    "tests/net/test_vpn.py::test_sigkill_then_clean_ends_the_openvpn_processes":
        "SIGKILLs a lab's owner and asserts `icelab clean`'s output",
    "tests/scenarios/test_seed_set.py::test_the_seed_set_passes_with_either_turn_backend":
        "its 300 s assume the machine to itself (about 130-145 s alone at --parallel 3, 29 scenarios; at 4 the split tunnel read 8.2 ms of jitter, past its bound); beside the workers' labs "
        "it ran out of them",
    "tests/fidelity/test_fidelity.py::test_deterministic_faults_match":
        "four labs at once, Chromium in two of them, compared to 0.25 s: beside two workers (load 6-9) "
        "3 of 31 faults failed, and the workers' own timing tests with them",
    "tests/fidelity/test_fidelity_persistent.py::test_persistent_faults_match":
        "three labs at once with Chromium, ICE states compared to 1.95 s",
    "tests/fidelity/test_fidelity_persistent.py::test_restart_faults_match":
        "the same three labs (one run for both tests); the restart's 3 s timer compared to 0.25 s",
}


#: the longest tests (minutes each, mostly waiting on timers): the parallel pass starts them
#: first, so that no worker is left with one of them at the end while the others idle
FIRST = [
    "tests/scenarios/test_softphone.py",
    "tests/serve/test_e2e.py",
    "tests/test_readme.py",
    "tests/policy/test_goldens.py",
    "tests/probe/test_confusion.py",
]


def _first_rank(item) -> int:
    return next((i for i, prefix in enumerate(FIRST) if item.nodeid.startswith(prefix)), len(FIRST))


@pytest.hookimpl(tryfirst=True)        # before `-m` deselects by marker
def pytest_collection_modifyitems(config, items):
    matched = set()
    for item in items:
        for prefix in SERIAL:
            if item.nodeid.startswith(prefix):
                item.add_marker(pytest.mark.serial)
                matched.add(prefix)
    # a renamed or moved test must not quietly leave the serial pass: when the whole suite
    # is collected, every entry of SERIAL must still name tests
    whole = [Path(a).resolve() for a in config.args] in ([ROOT / "tests"], [ROOT])
    if whole and set(SERIAL) - matched:
        raise pytest.UsageError(f"tests/conftest.py: SERIAL names no test any more: {sorted(set(SERIAL) - matched)}")
    # deselected, not skipped: the lossy faults' five runs are `make fidelity`'s, and netem's
    # measurements run where the kernel has sch_netem (`make test-netem` boots one)
    lossy = bool(os.environ.get("ICELAB_FIDELITY_LOSSY"))
    away = [i for i in items if (i.get_closest_marker("lossy") and not lossy)
            or (i.nodeid.startswith(NETEM) and not _netem_here())]
    if away:
        config.hook.pytest_deselected(items=away)
        items[:] = [i for i in items if i not in away]
    if parallel_worker():
        items.sort(key=_first_rank)      # stable: every worker computes the same order


NETEM = "tests/netem/test_netem.py"


def _netem_here() -> bool:
    from lab.net import shaping         # only when netem's tests were collected
    try:
        return shaping.backend().name == "netem"
    except shaping.ShapingError:
        return False


def pytest_unconfigure(config):
    if parallel_worker():
        try:
            run_dir().rmdir()          # the worker's own run directory, when its labs left it empty
        except OSError:
            pass


@pytest.fixture(autouse=True)
def host_untouched(request):
    """For tests marked `root`: the root namespace is identical before and after, and no
    lab leaves anything behind (processes, namespaces, state files)."""
    if request.node.get_closest_marker("root") is None:
        yield
        return
    if os.geteuid() != 0:
        pytest.fail("this test builds real network namespaces and needs root: run 'sudo make test' "
                    "(or 'pytest -m \"not root\"' for the tests that do not)")
    before = root_snapshot()
    ns_before = netns_in_use()
    labs_before = lab_state()
    yield
    left = leftovers(ns_before, labs_before)
    after = root_snapshot()
    changed = diff(before, after)
    assert not left, f"the lab left: {left}"
    assert not changed, f"the root namespace changed: {changed}"


@pytest.fixture
def repo() -> Path:
    return ROOT
