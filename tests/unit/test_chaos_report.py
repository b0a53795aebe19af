"""`make test` ends a failed run with the failed tests' names (CI logs are read from the bottom)."""

import json
from pathlib import Path

from tests.chaos.report import failed_tests, main


def test_failed_tests_are_listed_from_pytests_cache(tmp_path: Path) -> None:
    cache = tmp_path / "lastfailed"
    cache.write_text(json.dumps({"tests/chaos/test_crash_recovery.py::test_sigkill": True, "tests/unit/a.py::b": True}))
    listed = failed_tests(cache).splitlines()
    assert listed[-2:] == ["tests/chaos/test_crash_recovery.py::test_sigkill", "tests/unit/a.py::b"]
    assert "none recorded" in failed_tests(tmp_path / "missing")


def test_the_list_comes_after_the_tables_only_when_asked(tmp_path: Path) -> None:
    printed: list[str] = []
    main(["--last"], out=printed.append)
    assert not any("== Failed tests" in text for text in printed)
    main(["--last", "--failed"], out=printed.append)
    assert "== Failed tests" in printed[-1]
