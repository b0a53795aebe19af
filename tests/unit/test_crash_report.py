"""An unexpected crash leaves one line on stderr and a log of its own (CONTRACTS §1)."""

from __future__ import annotations

import re
import stat
import tempfile
from pathlib import Path

import pytest

from sync.crash import crash_report


def _crash(message: str) -> BaseException:
    try:
        raise RuntimeError(message)
    except RuntimeError as exc:
        return exc


def test_two_crashes_in_one_second_keep_two_private_logs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    assert crash_report(_crash("first cycle broke")) == 70
    assert crash_report(_crash("second cycle broke")) == 70
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 2 and all(line.startswith("crmsync: internal error: RuntimeError: ") for line in lines)
    named = [Path(re.search(r"details in (\S+)\)$", line).group(1)) for line in lines]  # type: ignore[union-attr]
    logs = sorted(tmp_path.glob("crmsync-crash-*.log"))
    assert sorted(named) == logs and len(logs) == 2
    assert "first cycle broke" in named[0].read_text() and "second cycle broke" in named[1].read_text()
    assert "Traceback" in named[0].read_text()
    for log in logs:
        assert stat.S_IMODE(log.stat().st_mode) == 0o600  # the owner's alone, in a shared temp folder


def test_a_crash_with_no_writable_temp_folder_still_says_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "missing"))
    assert crash_report(_crash("broke")) == 70
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no crash log could be written" in err
