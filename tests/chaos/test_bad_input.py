"""The bad input corpus (tests/fixtures/bad_input/, 300+ cases over every vendor, in each vendor's
own record shape): served by the sandboxes, read by the real connectors in one `crmsync sync`.
Every case ends in the quarantine with the expected reason or normalised as expected; the run
completes, and its summary counts the quarantined records per system. On both state backends: a
value SQLite stores and PostgreSQL refuses (an over-long id or name) once stopped a system's reads."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from pathlib import Path

from connectors.registry import TYPES
from tests.chaos import report
from tests.chaos.bad_input import corpus, feed_patches, judge, summary
from tests.kit import Sandboxes, json_out, run_crmsync


def test_every_bad_input_is_quarantined_with_its_reason_or_normalised(
    start_sandboxes_fixture: Callable[..., Sandboxes], state_url: str, tmp_path: Path
) -> None:
    data, cases = corpus()
    assert len(cases) >= 100 and {case["system"] for case in cases} == set(TYPES)
    sandboxes = start_sandboxes_fixture(data, time_scale=50)
    assert feed_patches(sandboxes) == sum(1 for case in cases if case["via"] == "patch")
    result = run_crmsync("sync", "-c", str(sandboxes.config(tmp_path, state=state_url)), "--json")
    assert result.returncode == 0, result.stderr[-2000:]
    doc = json_out(result)
    judged = judge(state_url, cases)
    report.record("bad_input", summary(judged))
    wrong = [f"{c['system']} {c['kind']} {c['id']} ({c['case']}): {c['why']}" for c in judged if not c["ok"]]
    assert not wrong, "\n".join(wrong)
    expected = Counter(case["system"] for case in cases if "quarantine" in case)
    for system_type in TYPES:
        outcome = doc["systems"][system_type]
        assert outcome["status"] == "ok", outcome["error"]
        assert outcome["quarantined"] == expected[system_type]
    assert doc["quarantined"] == sum(expected.values())
