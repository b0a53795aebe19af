"""`mapping.model.iso_text`: the text `datetime.isoformat()` writes, made faster for the stored times
of every record (sync/state/extracts.py), for any datetime."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

from hypothesis import example, given
from hypothesis import strategies as st

from mapping.model import iso_text, parse_timestamp

OFFSETS = st.one_of(
    st.just(UTC),
    st.integers(min_value=-23 * 60, max_value=23 * 60).map(lambda minutes: timezone(timedelta(minutes=minutes))),
    st.timedeltas(min_value=timedelta(hours=-23), max_value=timedelta(hours=23)).map(timezone),
    st.just(timezone(timedelta(hours=1), "CET")),
)
ZONES = st.one_of(st.none(), OFFSETS, st.just(ZoneInfo("Europe/Amsterdam")))


class Moment(datetime):
    pass


@given(st.datetimes(timezones=ZONES))
@example(datetime(999, 12, 31, 23, 59, 59, tzinfo=UTC))
@example(datetime(2025, 1, 26, 7, 58, tzinfo=UTC))
@example(datetime(2025, 1, 26, 7, 58, 0, 1, tzinfo=timezone(timedelta(hours=-1))))
@example(datetime(2025, 1, 26, 7, 58, 0, 0, tzinfo=timezone(timedelta(hours=5, minutes=30, seconds=7))))
@example(datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=timezone(timedelta(microseconds=1))))
def test_iso_text_is_isoformat(moment: datetime) -> None:
    assert iso_text(moment) == moment.isoformat()


def test_iso_text_of_what_the_readers_make_and_of_a_subclass() -> None:
    for text in ("2025-01-26T08:58:00+01:00", "2025-07-01T10:00:00.250000Z", "2025-07-01 10:00:00", "2025-03-30"):
        moment = parse_timestamp(text)
        assert iso_text(moment) == moment.isoformat()
        shop = datetime.fromisoformat(text.replace("Z", "+00:00"))
        assert iso_text(shop) == shop.isoformat()
    odd = Moment(2025, 1, 26, tzinfo=UTC)
    assert iso_text(odd) == odd.isoformat()


TIMESPECS = st.sampled_from(["auto", "hours", "minutes", "seconds", "milliseconds", "microseconds"])


@given(st.datetimes(), TIMESPECS, st.sampled_from("T "))
@example(datetime(2025, 1, 26), "auto", "T")
def test_a_time_without_an_offset_is_read_as_utc(moment: datetime, timespec: str, sep: str) -> None:
    """`parse_timestamp` reads a naive text again with UTC's offset written after it (faster than
    setting the zone afterwards): the same moment, the same `UTC`, for every spelling
    `isoformat` writes, and for a date alone, whose end is no time."""
    text = moment.isoformat(sep=sep, timespec=timespec)
    expected = datetime.fromisoformat(text).replace(tzinfo=UTC)
    for spelling in (text, text[:10], f" {text} ", text.replace("-", "", 2) if timespec == "hours" else text):
        try:
            wanted = datetime.fromisoformat(spelling.strip()).replace(tzinfo=UTC)
        except ValueError:
            continue
        read = parse_timestamp(spelling)
        assert read == wanted and read.tzinfo is UTC and read.isoformat() == wanted.isoformat()
    assert parse_timestamp(text) == expected
