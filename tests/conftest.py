import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))

from support import diff, leftovers, netns_in_use, root_snapshot  # noqa: E402


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
    yield
    left = leftovers(ns_before)
    after = root_snapshot()
    changed = diff(before, after)
    assert not left, f"the lab left: {left}"
    assert not changed, f"the root namespace changed: {changed}"


@pytest.fixture
def repo() -> Path:
    return ROOT
