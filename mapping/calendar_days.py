"""Days and years on the merchant's own calendar (`[segments] timezone`).

A Dutch merchant reads an order placed at 00:30 on 1 January in Amsterdam as a 2026 order, and
"yesterday" as the day before today on the clock on the wall; in UTC that order is from 2025 and a
day count turns at 01:00 or 02:00 local time. A `Calendar` holds the zone (given by the caller:
this module reads no clock and no file) and reads moments (epoch seconds, one per element of a
numpy column) on it:

- `wall`: the moment's local clock time, as epoch seconds of that time taken as UTC, so that
  numpy's datetime64 gives the local date and year of it;
- `days_between`: whole calendar days, the local midnights passed between two moments (an order
  at 23:59 is one day old at 00:00);
- `within`: a moment at most N such days before another (the window includes its last day).

Without a zone (`Calendar()`, the default, and what a config without `timezone` gets) every
reading is what crmsync did before the setting existed: days are whole 24-hour periods since the
moment, dates and years are UTC's. Nothing moves on upgrade until the merchant sets a zone.

Offsets are read per column, not per element: the zone's changes of offset (twice a year in
Europe) are found once per calendar year that holds a moment of the column, by sampling it every
six hours and halving between two samples that differ, and cached; a column is then one
`searchsorted` over those few moments.
Zones that change offset twice within six hours are read with the second change only.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo

import numpy as np
import numpy.typing as npt

DAY = 86_400
F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
_STEP = 6 * 3600
# datetime's range, in epoch seconds, kept inside by a year: moments beyond it are read at its edge.
_FIRST_YEAR, _LAST_YEAR = 2, 9998


def _offset(zone: tzinfo, moment: int) -> int:
    """Seconds east of UTC in `zone` at `moment` (epoch seconds)."""
    delta = datetime.fromtimestamp(moment, UTC).astimezone(zone).utcoffset()
    return int(delta.total_seconds()) if delta is not None else 0


def _year_start(year: int) -> int:
    return int(datetime(year, 1, 1, tzinfo=UTC).timestamp())


@functools.lru_cache(maxsize=4096)
def _changes(zone: tzinfo, year: int) -> tuple[tuple[int, int], ...]:
    """(first moment, offset from then on) of every change of offset in the UTC year `year`."""
    start, end = _year_start(year), _year_start(year + 1)
    found: list[tuple[int, int]] = []
    before, before_offset = start, _offset(zone, start)
    for at in range(start + _STEP, end + _STEP, _STEP):
        at = min(at, end)
        offset = _offset(zone, at)
        if offset != before_offset:
            low, high = before, at  # offset(low) is the old one, offset(high) the new one
            while high - low > 1:
                middle = (low + high) // 2
                if _offset(zone, middle) == before_offset:
                    low = middle
                else:
                    high = middle
            found.append((high, offset))  # a change at `end` itself is the next year's start's
            before_offset = offset
        before = at
        if at == end:
            break
    return tuple(found)


def _years_of(moments: F64) -> I64:
    """The UTC year of each moment (none missing)."""
    years: I64 = moments.astype(np.int64).astype("datetime64[s]").astype("datetime64[Y]").astype(np.int64) + 1970
    return years


@dataclass(frozen=True)
class Calendar:
    """The merchant's calendar; `zone` None: UTC, with days as 24-hour periods (as before)."""

    zone: tzinfo | None = None

    @property
    def local(self) -> bool:
        return self.zone is not None

    def offsets(self, stamps: npt.ArrayLike) -> I64:
        """Seconds east of UTC at each moment (0 where the moment is missing, NaN)."""
        values = np.asarray(stamps, dtype=np.float64)
        out = np.zeros(values.shape, dtype=np.int64)
        zone = self.zone
        known = ~np.isnan(values)
        if zone is None or zone is UTC or not known.any():
            return out
        # Only the years holding a moment: a placeholder date of year 1 beside this year's must not
        # scan the 2,000 years between. Each year starts with its own offset, then its changes.
        held = np.clip(_years_of(values[known]), _FIRST_YEAR, _LAST_YEAR)
        first = int(held.min())
        present = np.zeros(int(held.max()) - first + 1, dtype=np.bool_)
        present[held - first] = True  # one pass, no sort of a million profiles' years
        years = (np.flatnonzero(present) + first).tolist()
        moments = [float("-inf")]
        offsets = [_offset(zone, _year_start(years[0]))]
        for year in years:
            moments.append(float(_year_start(year)))
            offsets.append(_offset(zone, _year_start(year)))
            for at, offset in _changes(zone, year):
                moments.append(float(at))
                offsets.append(offset)
        index = np.searchsorted(np.array(moments), values[known], side="right") - 1
        out[known] = np.array(offsets, dtype=np.int64)[index]
        return out

    def wall(self, stamps: npt.ArrayLike) -> F64:
        """The local clock time of each moment, as epoch seconds of that time read as UTC (NaN stays)."""
        values = np.asarray(stamps, dtype=np.float64)
        if self.zone is None:
            return values
        return values + self.offsets(values)

    def day_numbers(self, stamps: npt.ArrayLike) -> F64:
        """The local date of each moment, as days since 1970-01-01 (NaN stays)."""
        return np.floor(self.wall(stamps) / DAY)

    def days_between(self, now: float, stamps: npt.ArrayLike) -> F64:
        """Whole days from each moment to `now`: local midnights passed with a zone, whole 24-hour
        periods without one (NaN where the moment is missing)."""
        values = np.asarray(stamps, dtype=np.float64)
        if self.zone is None:
            return np.floor((now - values) / DAY)
        today = float(self.day_numbers(np.array([now], dtype=np.float64))[0])
        days: F64 = today - self.day_numbers(values)
        return days

    def within(self, now: float, stamps: npt.ArrayLike, days: int) -> npt.NDArray[np.bool_]:
        """Whether each moment is at most `days` days before `now` (that it is not after `now` is
        the caller's to check): on the zone's calendar the whole of the last day counts, so the
        test is one comparison with the first moment of that day; without a zone, 24-hour periods
        to the second, as before. False where the moment is missing."""
        values = np.asarray(stamps, dtype=np.float64)
        with np.errstate(invalid="ignore"):
            if self.zone is None:
                return np.asarray(now - values <= days * DAY)
            return np.asarray(values >= self.day_start(now, -days))

    def day_start(self, now: float, shift: int = 0) -> float:
        """The first moment (epoch seconds) of the local day `shift` days after the one of `now`.
        A midnight the clocks skip (a zone whose summer time starts at 00:00) starts its day at
        the jump; one they repeat, at its first occurrence."""
        zone = self.zone or UTC
        day = datetime.fromtimestamp(now, zone).date() + timedelta(days=shift)
        return datetime.combine(day, time(0), zone).timestamp()

    def read_clock(self, wall: datetime) -> datetime:
        """A clock time given without an offset (`--since 2026-01-01T09:00`), read on this calendar
        as the merchant means it, in UTC: a time the clocks skip is read with the offset before the
        jump (so later, past it), one they repeat at its first occurrence. Without a zone: UTC, as
        before. An aware time keeps its own offset."""
        if wall.tzinfo is not None:
            return wall.astimezone(UTC)
        return wall.replace(tzinfo=self.zone or UTC).astimezone(UTC)

    def midnight(self, day: date) -> datetime:
        """The first moment of the local date `day`, in UTC (`day_start` for a date)."""
        return self.read_clock(datetime.combine(day, time(0)))

    def today(self, now: datetime) -> date:
        """The date of `now` on this calendar."""
        return now.astimezone(self.zone).date() if self.zone is not None else now.date()

    def date_of(self, moment: datetime) -> date:
        return moment.astimezone(self.zone).date() if self.zone is not None else moment.astimezone(UTC).date()

    def days_since(self, now: datetime, moment: datetime) -> int:
        """`days_between` for one pair of datetimes."""
        if self.zone is None:
            return (now - moment).days
        return (self.date_of(now) - self.date_of(moment)).days


AS_BEFORE = Calendar()  # no zone: UTC, and days as 24-hour periods
