"""`[schedule] cron`: a standard five-field crontab line, read as cron reads it, on the clock of
`[schedule] timezone` (UTC unless set).

APScheduler 3's `CronTrigger.from_crontab` differs from cron in two ways that move a merchant's
cycles to other days without a word: its weekday numbers start at Monday (cron's 0 and 7 are
Sunday, 1 is Monday: `1-5` ran Tuesday to Saturday, and `7` crashed the daemon), and a line that
restricts both the day of the month and the weekday fires only where both match (cron fires where
either does). `trigger` builds what cron means; `problem` says why a line is refused when the
config is read, before any daemon starts (an out-of-range field, or a line that never fires, such
as 31 February); `first_cycle_at` is when a starting daemon runs its first cycle.

The night the clocks go back, cron runs a line at a fixed time (neither its minute nor its hour
field starts with "*") once, where APScheduler runs it at both occurrences of the wall time
(`30 2 * * *` in Amsterdam: 02:30 summer time, then 02:30 winter time, an hour apart); a line such
as `*/15 * * * *` runs through both hours in either. cron's rule is kept (cronie, cron.c: "time
moved backward ... just run the wildcard jobs"). The night they go forward, a fixed time that does
not exist runs when the clocks have jumped, in both.
"""

from __future__ import annotations

import itertools
import re
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.combining import OrTrigger
from apscheduler.triggers.cron import CronTrigger

WEEKDAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")  # cron's numbers: Sunday 0 (and 7)
_ITEM = re.compile(r"^(?P<span>\*|[a-z0-9]+(?:-[a-z0-9]+)?)(?:/(?P<step>\d+))?$")
# The longest a valid line waits for its next slot: 29 February comes within 8 years (2096, 2104).
HORIZON = timedelta(days=366 * 9)


def zone(name: str) -> tzinfo:
    """The time zone `name` (IANA: "Europe/Amsterdam", "UTC"); ValueError naming it when unknown."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {name!r} (an IANA name such as 'Europe/Amsterdam' or 'UTC')") from None


def _weekday(token: str) -> int:
    if token.isdigit():
        number = int(token)
        if not 0 <= number <= 7:
            raise ValueError(f"weekday {token} is not 0-7 (0 and 7 are Sunday)")
        return number
    if token in WEEKDAYS:
        return WEEKDAYS.index(token)
    raise ValueError(f"weekday {token!r} is not a number 0-7 or a name sun-sat")


def weekdays(field: str) -> str:
    """Cron's weekday field (0 and 7 Sunday, names, ranges, steps, lists) in APScheduler's names,
    which carry no number to misread."""
    days: set[int] = set()
    for item in field.lower().split(","):
        match = _ITEM.match(item.strip())
        if match is None:
            raise ValueError(f"weekday field {field!r} is not understood")
        step = int(match.group("step") or 1)
        if step < 1:
            raise ValueError(f"weekday field {field!r}: a step is at least 1")
        span = match.group("span")
        if span == "*":
            first, last = 0, 6
        elif "-" in span:
            low, high = span.split("-", 1)
            first, last = _weekday(low), _weekday(high)
            if last < first:
                raise ValueError(f"weekday range {span!r} runs backwards")
        else:
            first = _weekday(span)
            last = 7 if match.group("step") else first  # "1/2": from Monday on, every other day
        days.update(day % 7 for day in range(first, last + 1, step))
    return ",".join(WEEKDAYS[day] for day in sorted(days))


def _days_exist(day: str, month: str) -> bool:
    """Whether the day-of-month and month fields name a date at all (in a leap year: 29 February
    counts). Asked of a one-year trigger, which answers at once; an open-ended one scans years
    for "31 4,6,9,11" before it gives up."""
    probe = CronTrigger(year="2000", month=month, day=day, timezone=UTC)
    return probe.get_next_fire_time(None, datetime(2000, 1, 1, tzinfo=UTC)) is not None


class _Wrapped(BaseTrigger):  # type: ignore[misc]  # APScheduler 3 ships no types
    """A trigger that mends the answers of the trigger it wraps (`made`) on `timezone`'s clock."""

    def __init__(self, made: Any, timezone: tzinfo) -> None:
        self.made, self.timezone = made, timezone


def _clocks_change(day: date, timezone: tzinfo) -> bool:
    """Whether `timezone`'s clocks change on `day`: its midnight and the next are apart by other
    than 24 hours."""
    midnight, next_midnight = (datetime.combine(d, time(0), timezone) for d in (day, day + timedelta(days=1)))
    return midnight.utcoffset() != next_midnight.utcoffset()


class OnceInTheRepeatedHour(_Wrapped):
    """`made`, less its second run at a wall time the clocks repeat (the later of the two)."""

    def get_next_fire_time(self, previous_fire_time: datetime | None, now: datetime) -> datetime | None:
        at: datetime | None = self.made.get_next_fire_time(previous_fire_time, now)
        # zoneinfo marks the second occurrence of a repeated wall time with fold=1. The next slot
        # is asked from a moment in UTC: arithmetic on a local time drops its fold.
        while at is not None and at.astimezone(self.timezone).fold:
            at = self.made.get_next_fire_time(None, at.astimezone(UTC) + timedelta(seconds=1))
        return at

    def __str__(self) -> str:
        return f"{self.made} (once in a repeated hour)"


def at_fixed_times(line: str) -> bool:
    """Whether cron runs `line` once in an hour the clocks repeat: neither its minute nor its hour
    field starts with "*" (cron's wildcard jobs run through both)."""
    minute, hour = line.split()[:2]
    return not minute.startswith("*") and not hour.startswith("*")


class NoDaySkipped(_Wrapped):
    """`made`, without APScheduler 3's skipped day after a change of the clocks: asked at a moment
    before the change, on the day of the change, its CronTrigger answers a day late (`30 0 * * *`
    in New York asked at 2025-03-09 01:00 EST: 2025-03-11 00:30, not 2025-03-10). Asked again from
    the midnight after each such day before its answer, it answers right."""

    def get_next_fire_time(self, previous_fire_time: datetime | None, now: datetime) -> datetime | None:
        at: datetime | None = self.made.get_next_fire_time(previous_fire_time, now)
        if at is None:
            return None
        start = now if previous_fire_time is None else min(now, previous_fire_time + timedelta(microseconds=1))
        day = start.astimezone(self.timezone).date()
        last = at.astimezone(self.timezone).date()
        while day < last:
            if _clocks_change(day, self.timezone):
                next_midnight = datetime.combine(day + timedelta(days=1), time(0), self.timezone)
                again: datetime | None = self.made.get_next_fire_time(None, next_midnight.astimezone(UTC))
                if again is not None and again < at:
                    return again
            day += timedelta(days=1)
        return at

    def __str__(self) -> str:
        return str(self.made)


def trigger(line: str, timezone: tzinfo) -> Any:
    """The APScheduler trigger that fires when cron would fire for `line`, on `timezone`'s clock."""
    made = _days_trigger(line, timezone)
    return NoDaySkipped(OnceInTheRepeatedHour(made, timezone) if at_fixed_times(line) else made, timezone)


def _days_trigger(line: str, timezone: tzinfo) -> Any:
    fields = line.split()
    if len(fields) != 5:
        raise ValueError("cron needs five fields: minute hour day month weekday")
    minute, hour, day, month, weekday = fields
    common: dict[str, Any] = {"minute": minute, "hour": hour, "month": month, "timezone": timezone}
    # Cron's rule: a field starting with "*" is unrestricted; when both days are restricted, a day
    # matching either one fires (and a day of the month that never comes leaves the weekdays).
    if not day.startswith("*") and not weekday.startswith("*"):
        on_weekdays = CronTrigger(day_of_week=weekdays(weekday), **common)
        if not _days_exist(day, month):
            return on_weekdays
        return OrTrigger([CronTrigger(day=day, **common), on_weekdays])
    if weekday.startswith("*") and not _days_exist(day, month):
        raise ValueError(f"{line!r} never fires (no such date)")
    return CronTrigger(day=day, day_of_week="*" if weekday == "*" else weekdays(weekday), **common)


def problem(line: str, timezone: tzinfo, now: datetime) -> str | None:
    """Why `line` cannot be a schedule, or None."""
    try:
        made = trigger(line, timezone)
    except ValueError as exc:
        return str(exc)
    first = made.get_next_fire_time(None, now)
    if first is None or first - now > HORIZON:
        return f"{line!r} never fires (no such date)"
    return None


def first_cycle_at(made: Any, last_started: datetime | None, now: datetime) -> datetime:
    """When a starting daemon runs its first cycle on the cron trigger `made`: now when no cycle
    ran to its end before, or when a slot passed since the last such cycle began (the daemon was
    down, or stopped the cycle of that slot part-way: as a systemd timer with `Persistent=true`
    catches up); else at the next slot, so a restart or a deploy does not sync at an hour the
    merchant's cron keeps free. `last_started`: when the latest cycle that ran to its end began."""
    if last_started is None:
        return now
    missed = made.get_next_fire_time(None, last_started + timedelta(seconds=1))
    if missed is None or missed <= now:
        return now
    upcoming = made.get_next_fire_time(None, now)
    return upcoming if upcoming is not None else now


def _times_of_day(minute: str, hour: str) -> list[int]:
    """The minutes of the day (0-1439) a line's minute and hour fields fire at: the same on every
    day it fires."""
    made = CronTrigger(minute=minute, hour=hour, timezone=UTC)
    day = datetime(2000, 1, 3, tzinfo=UTC)
    found: list[int] = []
    at = made.get_next_fire_time(None, day)
    while at is not None and at < day + timedelta(days=1):
        found.append(at.hour * 60 + at.minute)
        at = made.get_next_fire_time(at, at + timedelta(minutes=1))
    return found


def longest_wait(line: str, timezone: tzinfo, now: datetime, horizon: timedelta = timedelta(days=4 * 366)) -> timedelta:
    """The longest time without a slot of `line` from `now` through `horizon` (four years: every
    length of February; and on to the first day it fires after that), in real time: the longest gap
    inside a day it fires, or between the last slot of one such day and the first of the next. Day
    by day, so a line firing every minute on weekdays shows its weekend, whatever the day it is
    asked on. On a day the clocks change, its slots are taken in UTC (00:00 and 12:00 in Amsterdam
    are 13 hours apart on the last Sunday of October), a wall time the clocks repeat once or twice
    as `trigger` runs it."""
    made = trigger(line, timezone)
    folds = (0,) if at_fixed_times(line) else (0, 1)
    minute, hour = line.split()[:2]
    times = _times_of_day(minute, hour)
    wall = timedelta(minutes=max((b - a for a, b in itertools.pairwise(times)), default=0))
    longest = wall
    end, limit = now + horizon, now + HORIZON
    previous_last: datetime | None = None
    days = 0
    at = made.get_next_fire_time(None, now)
    while at is not None and at <= limit:
        day = at.astimezone(timezone).date()
        slots = [datetime.combine(day, time(*divmod(t, 60)), timezone).astimezone(UTC) for t in (times[0], times[-1])]
        if _clocks_change(day, timezone):
            moments = sorted(
                {
                    datetime.combine(day, time(*divmod(t, 60), fold=fold), timezone).astimezone(UTC)
                    for t in times
                    for fold in folds
                }
            )
            longest = max([longest, *(b - a for a, b in itertools.pairwise(moments))])
            slots = [moments[0], moments[-1]]
        if previous_last is not None:
            longest = max(longest, slots[0] - previous_last)
        previous_last = slots[1]
        days += 1
        if at > end and days >= 2:
            break
        at = made.get_next_fire_time(None, datetime.combine(day + timedelta(days=1), time(0), timezone))
    return longest
