"""`$CRMSYNC_NOW` fixes the clock; `$CRMSYNC_NOW_SPEED` lets it run from there, faster than real
time (a daemon watched over simulated weeks)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from connectors import clock


@pytest.fixture(autouse=True)
def fresh_clock(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """A monotonic clock the test moves by hand, and a clock module that has not started yet."""
    ticks = [1000.0]
    monkeypatch.setattr(clock, "_origin", None)
    monkeypatch.setattr(clock.time, "monotonic", lambda: ticks[0])
    monkeypatch.delenv("CRMSYNC_NOW", raising=False)
    monkeypatch.delenv("CRMSYNC_NOW_SPEED", raising=False)
    return ticks


def test_the_plain_override_is_one_instant(monkeypatch: pytest.MonkeyPatch, fresh_clock: list[float]) -> None:
    monkeypatch.setenv("CRMSYNC_NOW", "2026-03-01T12:00:00Z")
    first = clock.now()
    fresh_clock[0] += 3600
    assert first == clock.now() == datetime(2026, 3, 1, 12, tzinfo=UTC)


def test_a_speed_runs_the_clock_from_the_override(monkeypatch: pytest.MonkeyPatch, fresh_clock: list[float]) -> None:
    monkeypatch.setenv("CRMSYNC_NOW", "2026-03-01T12:00:00Z")
    monkeypatch.setenv("CRMSYNC_NOW_SPEED", "86400")  # a day per second
    start = clock.now()
    assert start == datetime(2026, 3, 1, 12, tzinfo=UTC)
    fresh_clock[0] += 2.5
    assert clock.now() == start + timedelta(days=2.5)


def test_a_speed_without_an_override_starts_from_the_real_time(
    monkeypatch: pytest.MonkeyPatch, fresh_clock: list[float]
) -> None:
    monkeypatch.setenv("CRMSYNC_NOW_SPEED", "60")
    start = clock.now()
    assert abs(start - datetime.now(UTC)) < timedelta(seconds=5)
    fresh_clock[0] += 10
    assert clock.now() == start + timedelta(minutes=10)


@pytest.mark.parametrize(("name", "value"), [("CRMSYNC_NOW", "next tuesday"), ("CRMSYNC_NOW_SPEED", "fast"),
                                             ("CRMSYNC_NOW_SPEED", "0"), ("CRMSYNC_NOW_SPEED", "-2"),
                                             ("CRMSYNC_NOW_SPEED", "inf")])  # fmt: skip
def test_a_bad_value_is_a_clock_error_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(clock.ClockError, match=name):
        clock.now()
