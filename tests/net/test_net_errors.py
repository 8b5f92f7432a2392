"""Failures in lab/net reach the user as LabErrors (a message, an exit status), never as a
bare RuntimeError's traceback."""

import re
from pathlib import Path

import pytest

from lab.core.errors import LabError
from lab.net import firewall

NET = Path(__file__).resolve().parents[2] / "lab" / "net"
OWNED_ELSEWHERE = {"natcheck.py"}


def test_no_bare_runtime_error_is_raised_in_lab_net():
    found = [f"{p.relative_to(NET)}:{n}" for p in sorted(NET.rglob("*.py")) if p.name not in OWNED_ELSEWHERE
             for n, line in enumerate(p.read_text().splitlines(), 1) if re.search(r"raise RuntimeError\b", line)]
    assert found == []


def test_an_nft_failure_is_a_lab_error_naming_the_command():
    with pytest.raises(LabError, match=r"nft list ruleset failed in the namespace of pid 999999999: ") as info:
        firewall.nft(999999999, "list", "ruleset")
    assert info.value.exit_status == 1
