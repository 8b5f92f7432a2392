"""The golden-file check itself: a golden file that is not there is a failure, not a pass."""

import pytest

from support import check_golden


def test_a_missing_golden_file_fails_and_is_not_written(tmp_path, monkeypatch):
    monkeypatch.delenv("ICELAB_UPDATE_GOLDEN", raising=False)
    golden = tmp_path / "case.txt"
    with pytest.raises(pytest.fail.Exception, match="ICELAB_UPDATE_GOLDEN=1"):
        check_golden(golden, "some message\n")
    assert not golden.exists()


def test_update_writes_the_golden_file(tmp_path, monkeypatch):
    monkeypatch.setenv("ICELAB_UPDATE_GOLDEN", "1")
    golden = tmp_path / "case.txt"
    check_golden(golden, "some message\n")
    assert golden.read_text() == "some message\n"


def test_a_different_text_fails(tmp_path, monkeypatch):
    monkeypatch.delenv("ICELAB_UPDATE_GOLDEN", raising=False)
    golden = tmp_path / "case.txt"
    golden.write_text("old\n")
    with pytest.raises(AssertionError):
        check_golden(golden, "new\n")
