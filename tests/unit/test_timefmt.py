"""Times for people (local zone, whole seconds, the zone shown) and for JSON (UTC ISO-8601, whole
seconds): sync/timefmt.py."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone

import pytest

from sync.timefmt import for_json, for_people


@pytest.fixture
def local_zone(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """This process in Amsterdam's zone for one test (TZ, as a user's shell sets it)."""
    monkeypatch.setenv("TZ", "Europe/Amsterdam")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def test_for_people_shows_local_time_without_fractions_and_names_the_zone(local_zone: None) -> None:
    assert for_people(datetime(2026, 11, 20, 10, 0, 0, 654321, tzinfo=UTC)) == "2026-11-20 11:00:00 CET"
    assert for_people("2026-07-01T22:30:05.5Z") == "2026-07-02 00:30:05 CEST"  # summer time, the next day
    assert for_people("2026-07-01T22:30:05.123456+00:00") == "2026-07-02 00:30:05 CEST"  # as the state stores it
    assert for_people(datetime(2026, 1, 1, 12, 0, 0)) == "2026-01-01 13:00:00 CET"  # naive: UTC
    assert for_people(datetime(2026, 1, 1, 12, tzinfo=timezone(timedelta(hours=-5)))) == "2026-01-01 18:00:00 CET"


def test_for_people_follows_tz(monkeypatch: pytest.MonkeyPatch) -> None:
    try:
        monkeypatch.setenv("TZ", "Asia/Kolkata")
        time.tzset()
        assert for_people("2026-11-20T10:00:00Z") == "2026-11-20 15:30:00 IST"
        monkeypatch.setenv("TZ", "UTC")
        time.tzset()
        assert for_people("2026-11-20T10:00:00Z") == "2026-11-20 10:00:00 UTC"
    finally:
        monkeypatch.undo()
        time.tzset()


def test_for_json_is_utc_iso_8601_in_whole_seconds() -> None:
    assert for_json(datetime(2026, 11, 20, 10, 0, 0, 654321, tzinfo=UTC)) == "2026-11-20T10:00:00+00:00"
    assert for_json("2026-11-20T11:00:00.999999+01:00") == "2026-11-20T10:00:00+00:00"
    assert for_json(datetime(2026, 11, 20, 10, 0, 1)) == "2026-11-20T10:00:01+00:00"  # naive: UTC
    assert datetime.fromisoformat(for_json("2026-11-20T10:00:00Z")) == datetime(2026, 11, 20, 10, tzinfo=UTC)


def test_what_is_no_instant_passes_through(local_zone: None) -> None:
    for value in ("never", "-", "2026-11-20", "2026-13-45T99:99:99"):
        assert for_people(value) == value and for_json(value) == value
    assert for_people(None) is None and for_json(None) is None


def test_a_time_on_the_merchants_calendar() -> None:
    """`[segments] timezone`'s readings: the same moment at the zone's offset, and for people in it."""
    from zoneinfo import ZoneInfo

    from sync.timefmt import for_json_in

    amsterdam = ZoneInfo("Europe/Amsterdam")
    moment = datetime(2026, 10, 31, 23, 0, 0, 500_000, tzinfo=UTC)
    assert for_json_in(moment, amsterdam) == "2026-11-01T00:00:00+01:00"
    assert for_json_in(moment, None) == for_json(moment) == "2026-10-31T23:00:00+00:00"
    assert for_json_in(None, amsterdam) is None
    assert for_people("2026-07-01T10:00:00+00:00", amsterdam) == "2026-07-01 12:00:00 CEST"
