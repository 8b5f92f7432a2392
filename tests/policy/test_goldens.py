"""Every policy in tests/policy/policies/ checked for real against its golden: each requirement's
verdict, the line that decided it and its text, and the fix (its lines, where it goes, verified)."""

import json
from pathlib import Path

import pytest

from lab.model.policy.deploy import deployment
from lab.scenario.policy import check, load_policy, media_info

HERE = Path(__file__).parent
GOLDENS = sorted((HERE / "goldens").glob("*.json"))


def run(name: str, info: str | None = None, through: str | None = None, vdi: bool = False,
        bypass: str | None = None):
    d = deployment("10.20.0.0/23", ["windows", "linux"], str(HERE / "ip-ranges.json"), "eu-west-2",
                   "inside=ens192,outside=ens160", through=through, vdi=vdi, bypass=bypass)
    media_info(str(HERE / "policies" / info) if info else None, d)
    pol = load_policy(f"tests/policy/policies/{name}", None, str(HERE / "policies" / "objects.csv"), "stateful", d)
    return check(pol, d, name="policy-test")


@pytest.mark.root
@pytest.mark.parametrize("golden", GOLDENS, ids=[g.stem for g in GOLDENS])
def test_golden(golden, monkeypatch):
    monkeypatch.chdir(HERE.parent.parent)
    want = json.loads(golden.read_text())
    res = run(want["policy"], want.get("media_info"), want.get("through"), want.get("vdi", False), want.get("bypass"))
    assert res.error is None
    got = {r.id: r for r in res.requirements}
    assert set(got) == set(want["requirements"])
    for rid, w in want["requirements"].items():
        r = got[rid]
        db = r.decided_by or {}
        assert (rid, r.verdict) == (rid, w["verdict"]), r.observed
        assert (rid, db.get("line"), db.get("text")) == (rid, w["line"], w["text"]), r.observed
        if w["fix"] is None:
            assert r.fix is None
        else:
            assert r.fix["lines"] == w["fix"]
            assert r.fix["before"]["line"] == w["fix_before_line"]
            assert r.fix["verified"] is True
    if "beyond" in want:      # accepting rules broader than the softphone needs, by line
        assert [b["line"] for b in res.beyond] == want["beyond"]
    assert res.passed == (want["exit"] == 0)
    if not res.passed:
        assert res.fixed_text is not None        # a failing policy here always gets a verified fix
