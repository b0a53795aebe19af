"""`make test` ends a failed run with the failed tests' names (CI logs are read from the bottom)."""

import json
import subprocess
import sys
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


def test_each_failed_test_comes_with_the_reason_it_gave(tmp_path: Path) -> None:
    """A real pytest run of failing tests (a function, a parametrised case, a method, a fixture
    error), its cache and JUnit XML read as `make test` reads them."""
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "__init__.py").write_text("")
    (tmp_path / "tests" / "test_flaky.py").write_text(
        "import pytest\n\n"
        "def test_counts():\n    seen = {'a': 1}\n    assert seen == {'a': 2}, 'the receiver saw ' + 'x' * 400\n\n"
        "@pytest.mark.parametrize('n', [1, 2])\ndef test_even(n):\n    assert n % 2 == 0\n\n"
        "class TestGroup:\n    def test_inside(self):\n        raise RuntimeError('health answered 503')\n\n"
        "@pytest.fixture\ndef broken():\n    raise OSError('port taken')\n\n"
        "def test_with_fixture(broken):\n    pass\n\n"
        "def test_fine():\n    assert True\n"
    )
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-o", f"cache_dir={tmp_path / 'cache'}", "--junitxml=run.xml"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 1, run.stdout[-2000:]
    printed = failed_tests(tmp_path / "cache" / "v" / "cache" / "lastfailed", tmp_path / "run.xml").splitlines()
    at = {line: i for i, line in enumerate(printed)}
    names = [line for line in printed if line.startswith("tests/")]
    assert names == [
        "tests/test_flaky.py::TestGroup::test_inside",
        "tests/test_flaky.py::test_counts",
        "tests/test_flaky.py::test_even[1]",
        "tests/test_flaky.py::test_with_fixture",
    ]

    def reason(name: str) -> str:
        start = at[name] + 1
        end = next((i for i in range(start, len(printed)) if printed[i].startswith("tests/")), len(printed))
        return "\n".join(printed[start:end])

    assert "RuntimeError: health answered 503" in reason("tests/test_flaky.py::TestGroup::test_inside")
    counts = reason("tests/test_flaky.py::test_counts")
    assert "the receiver saw" in counts and "{'a': 1} == {'a': 2}" in counts
    assert all(len(line) <= 4 + 300 for line in counts.splitlines())  # long lines cut short
    assert "assert (1 % 2) == 0" in reason("tests/test_flaky.py::test_even[1]")
    assert "OSError: port taken" in reason("tests/test_flaky.py::test_with_fixture")
    # Without the XML (a run that died before writing it) the names are still listed.
    assert [
        line
        for line in failed_tests(tmp_path / "cache" / "v" / "cache" / "lastfailed", tmp_path / "none.xml").splitlines()
        if line.startswith("    ")
    ] == []
