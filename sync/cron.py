"""`[schedule] cron`: a standard five-field crontab line, read as cron reads it, on the clock of
`[schedule] timezone` (UTC unless set).

APScheduler 3's `CronTrigger.from_crontab` differs from cron in two ways that move a merchant's
cycles to other days without a word: its weekday numbers start at Monday (cron's 0 and 7 are
Sunday, 1 is Monday: `1-5` ran Tuesday to Saturday, and `7` crashed the daemon), and a line that
restricts both the day of the month and the weekday fires only where both match (cron fires where
either does). `trigger` builds what cron means; `problem` says why a line is refused when the
config is read, before any daemon starts (an out-of-range field, or a line that never fires, such
as 31 February); `first_cycle_at` is when a starting daemon runs its first cycle.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from apscheduler.triggers.combining import OrTrigger
from apscheduler.triggers.cron import CronTrigger

WEEKDAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")  # cron's numbers: Sunday 0 (and 7)
_ITEM = re.compile(r"^(?P<span>\*|[a-z0-9]+(?:-[a-z0-9]+)?)(?:/(?P<step>\d+))?$")
# The longest a valid line waits for its next slot: 29 February on a Monday, say, comes within 28
# years; a line with no slot in that time has none at all (31 February, 30 February).
HORIZON = timedelta(days=366 * 29)


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


def trigger(line: str, timezone: tzinfo) -> Any:
    """The APScheduler trigger that fires when cron would fire for `line`, on `timezone`'s clock."""
    fields = line.split()
    if len(fields) != 5:
        raise ValueError("cron needs five fields: minute hour day month weekday")
    minute, hour, day, month, weekday = fields
    common: dict[str, Any] = {"minute": minute, "hour": hour, "month": month, "timezone": timezone}
    # Cron's rule: a field starting with "*" is unrestricted; when both days are restricted, a day
    # matching either one fires.
    if not day.startswith("*") and not weekday.startswith("*"):
        return OrTrigger([CronTrigger(day=day, **common), CronTrigger(day_of_week=weekdays(weekday), **common)])
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
    ran before, or when a slot passed since the last one began (the daemon was down then, as a
    systemd timer with `Persistent=true` catches up); else at the next slot, so a restart or a
    deploy does not sync at an hour the merchant's cron keeps free."""
    if last_started is None:
        return now
    missed = made.get_next_fire_time(None, last_started + timedelta(seconds=1))
    if missed is None or missed <= now:
        return now
    upcoming = made.get_next_fire_time(None, now)
    return upcoming if upcoming is not None else now


def longest_wait(made: Any, now: datetime, horizon: timedelta = timedelta(days=366), slots: int = 2000) -> timedelta:
    """The longest time between two slots of the trigger `made` in the coming `horizon` (at most
    `slots` slots looked at: a line firing every minute shows its wait within the first two)."""
    longest = timedelta(0)
    previous = made.get_next_fire_time(None, now)
    end = now + horizon
    for _ in range(slots):
        if previous is None or previous > end:
            break
        following = made.get_next_fire_time(previous, previous + timedelta(seconds=1))
        if following is None:
            break
        # In UTC: two times of one zone subtract as wall clocks, and a night losing an hour is 23 h.
        longest = max(longest, following.astimezone(UTC) - previous.astimezone(UTC))
        previous = following
    return longest
