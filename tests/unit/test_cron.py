"""`[schedule] cron` is read as cron reads it (sync/cron.py): weekday numbers from Sunday (0 and 7),
either the day of the month or the weekday when both are restricted, on `[schedule] timezone`'s
clock; a line that is out of range or never fires, and a `max_staleness` the schedule cannot keep,
are config errors before any daemon starts; a starting daemon catches up a slot it missed and
otherwise waits for the next one."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from sync.config import ConfigError, load_config
from sync.cron import first_cycle_at, longest_wait, trigger, zone
from sync.scheduler import _schedule_trigger
from sync.state import StateStore

MONDAY = datetime(2026, 12, 7, 8, 0, tzinfo=UTC)  # a Monday, 08:00 UTC
AMSTERDAM = zone("Europe/Amsterdam")
SHOP = (
    '[systems.web]\ntype = "woocommerce"\nbase_url = "https://winkel.example.nl"\n'
    'consumer_key = "ck_cron_key_1"\nconsumer_secret = "cs_cron_secret_1"\n'
)


def fires(line: str, count: int = 5, start: datetime = MONDAY, timezone: Any = UTC) -> list[str]:
    made, previous, now, out = trigger(line, timezone), None, start, []
    for _ in range(count):
        at = made.get_next_fire_time(previous, now)
        out.append(at.astimezone(UTC).strftime("%a %d %H:%M"))
        previous, now = at, at.astimezone(UTC) + timedelta(seconds=1)  # a local time's arithmetic drops its fold
    return out


def test_weekday_numbers_count_from_sunday_as_in_cron() -> None:
    """APScheduler's own crontab reading starts at Monday: "1-5" ran Tuesday to Saturday."""
    assert fires("0 9 * * 1-5") == ["Mon 07 09:00", "Tue 08 09:00", "Wed 09 09:00", "Thu 10 09:00", "Fri 11 09:00"]
    assert fires("0 9 * * 0", 1) == fires("0 9 * * 7", 1) == fires("0 9 * * SUN", 1) == ["Sun 13 09:00"]
    assert fires("0 9 * * 5-7", 3) == ["Fri 11 09:00", "Sat 12 09:00", "Sun 13 09:00"]
    assert fires("0 9 * * mon-fri", 5) == fires("0 9 * * 1-5")
    assert fires("0 9 * * */2", 4) == ["Tue 08 09:00", "Thu 10 09:00", "Sat 12 09:00", "Sun 13 09:00"]


def test_a_day_of_the_month_and_a_weekday_fire_on_either() -> None:
    assert fires("0 9 1 * 1", 3) == ["Mon 07 09:00", "Mon 14 09:00", "Mon 21 09:00"]
    assert fires("0 9 1 * 1", 5)[-1] == "Fri 01 09:00"  # the 1st of January 2027, a Friday
    # a day field starting with "*" is no restriction: then both must match, as in cron
    assert fires("0 9 */2 * 1", 2) == ["Mon 07 09:00", "Mon 21 09:00"]


def test_the_line_runs_on_the_configured_clock_across_daylight_saving() -> None:
    """09:00 in Amsterdam is 08:00 UTC in winter and 07:00 in summer; the longest wait of a daily
    line there is 25 hours (the night the clocks go back), measured in real time."""
    winter = datetime(2027, 3, 26, 12, tzinfo=UTC)
    assert fires("0 9 * * *", 3, winter, AMSTERDAM) == ["Sat 27 08:00", "Sun 28 07:00", "Mon 29 07:00"]
    assert longest_wait("0 9 * * *", AMSTERDAM, MONDAY) == timedelta(hours=25)
    assert longest_wait("0 9 * * 1-5", UTC, MONDAY) == timedelta(days=3)
    assert longest_wait("*/15 * * * *", UTC, MONDAY) == timedelta(minutes=15)
    # asked just before the night the clocks go back: 02:00 comes twice that night and runs once,
    # so a daily 02:00 waits 25 hours, a weekly one 7 days and an hour; inside that day, 00:00 and
    # 12:00 are 13 hours apart, and an hourly line runs through both hours
    october = datetime(2026, 10, 24, 8, tzinfo=UTC)
    assert longest_wait("0 2 * * *", AMSTERDAM, october) == timedelta(hours=25)
    assert longest_wait("0 2 * * 0", AMSTERDAM, october - timedelta(days=4)) == timedelta(days=7, hours=1)
    assert longest_wait("30 1-3 * * *", AMSTERDAM, october) == timedelta(hours=22)
    assert longest_wait("0 */12 * * *", AMSTERDAM, october) == timedelta(hours=13)
    assert longest_wait("0 */12 * * *", UTC, october) == timedelta(hours=12)
    assert longest_wait("0 * * * *", AMSTERDAM, october) == timedelta(hours=1)


def test_a_fixed_time_in_the_hour_the_clocks_repeat_runs_once_as_in_cron() -> None:
    """The night the clocks go back, 02:30 comes twice in Amsterdam. cron runs a line at a fixed
    time once (cronie: "time moved backward ... just run the wildcard jobs"); APScheduler ran it at
    both, an hour apart. A line whose minute or hour starts with "*" runs through both hours."""
    night = datetime(2026, 10, 24, 22, tzinfo=UTC)  # Sunday 25 October, 00:00 in Amsterdam
    assert fires("30 2 * * *", 3, night, AMSTERDAM) == ["Sun 25 00:30", "Mon 26 01:30", "Tue 27 01:30"]
    assert fires("30 1-3 * * *", 4, night, AMSTERDAM) == [
        "Sat 24 23:30",
        "Sun 25 00:30",
        "Sun 25 02:30",
        "Mon 26 00:30",
    ]
    assert fires("0 2 * * 0", 2, night, AMSTERDAM) == ["Sun 25 00:00", "Sun 01 01:00"]
    # wildcard lines: every wall time of both hours
    assert fires("*/30 2 * * *", 5, night, AMSTERDAM) == [
        "Sun 25 00:00",
        "Sun 25 00:30",
        "Sun 25 01:00",
        "Sun 25 01:30",
        "Mon 26 01:00",
    ]
    assert fires("0 * * * *", 4, night + timedelta(hours=1), AMSTERDAM) == [
        "Sat 24 23:00",
        "Sun 25 00:00",
        "Sun 25 01:00",
        "Sun 25 02:00",
    ]
    # the night the clocks go forward, a time that does not exist runs when they have jumped
    spring = datetime(2026, 3, 28, 22, tzinfo=UTC)
    assert fires("30 2 * * *", 2, spring, AMSTERDAM) == ["Sun 29 01:30", "Mon 30 00:30"]


@pytest.mark.parametrize("weekday", range(7))
def test_the_longest_wait_of_a_line_firing_often_shows_its_weekend_whatever_the_day(weekday: int) -> None:
    """Every minute on weekdays: the weekend is two days without a cycle, on whatever day the
    config is read (a walk of the first slots found a minute on Monday and two days on Friday)."""
    today = MONDAY + timedelta(days=weekday)
    assert longest_wait("* * * * 1-5", UTC, today) == timedelta(days=2, minutes=1)
    assert longest_wait("*/2 * * * 1-5", UTC, today) == timedelta(days=2, minutes=2)
    assert longest_wait("* * * 1 *", UTC, today) == timedelta(days=335, minutes=1)  # January only (a leap year)
    assert longest_wait("0 0 29 2 *", UTC, today) >= timedelta(days=365 * 4)


def test_a_day_of_the_month_that_never_comes_leaves_the_weekdays_and_is_read_at_once() -> None:
    """ "31 in April, June, September, November, or Mondays": cron runs it on Mondays; APScheduler
    scanned years for the 31st at every look (minutes for "*/5 * 31 2 1-5")."""
    started = time.perf_counter()
    assert fires("*/5 * 31 2 1-5", 2) == ["Mon 01 00:00", "Mon 01 00:05"]  # 1 February 2027
    assert fires("0 0 31 4,6,9,11 1", 2) == ["Mon 05 00:00", "Mon 12 00:00"]  # April 2027
    assert longest_wait("*/5 * 31 2 1-5", UTC, MONDAY) > timedelta(days=300)  # March to January
    assert time.perf_counter() - started < 5  # hours of scanning before; well under a second now


@pytest.mark.parametrize(
    ("schedule", "said"),
    [
        ('cron = "0 0 31 2 *"', "schedule.cron: '0 0 31 2 *' never fires"),
        ('cron = "61 * * * *"', "schedule.cron: error validating expression '61'"),
        ('cron = "0 9 * * 8"', "schedule.cron: weekday 8 is not 0-7"),
        ('cron = "0 9 * * 5-1"', "schedule.cron: weekday range '5-1' runs backwards"),
        ('cron = "0 9 * * *"\ntimezone = "Europe/Amsterdm"', "schedule.timezone: unknown time zone 'Europe/Amsterdm'"),
        ('interval = "1h"\ntimezone = "Europe/Amsterdam"', "schedule.timezone: is the clock of a cron line"),
    ],
)
def test_a_line_that_is_out_of_range_or_never_fires_is_a_config_error(tmp_path: Path, schedule: str, said: str) -> None:
    path = tmp_path / "crmsync.toml"
    path.write_text(f"[schedule]\n{schedule}\n{SHOP}")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert any(line.startswith(f"config error: {said}") for line in caught.value.problems), caught.value.problems


@pytest.mark.parametrize(
    ("schedule", "staleness", "refused"),
    [
        ('cron = "0 9 * * 1-5"', "48h", True),  # the weekend is 72 hours without a cycle
        ('cron = "0 9 * * 1-5"', "73h", False),
        ('cron = "0 9 * * *"\ntimezone = "Europe/Amsterdam"', "24h", True),  # 25 hours in October
        ('interval = "1h"', "1h", True),
        ('interval = "1h"', "3h", False),
    ],
)
def test_a_max_staleness_the_schedule_cannot_keep_is_a_config_error(
    tmp_path: Path, schedule: str, staleness: str, refused: bool
) -> None:
    """Within the schedule's longest wait, every cycle's result would be stale before the next one:
    `status` exit 3 and /healthz 503 part of every day, though nothing is wrong."""
    path = tmp_path / "crmsync.toml"
    path.write_text(f'[schedule]\n{schedule}\n[writeback]\nmax_staleness = "{staleness}"\n{SHOP}')
    if not refused:
        assert load_config(path).config.writeback.max_staleness is not None
        return
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert any("writeback.max_staleness" in line and "longest wait" in line for line in caught.value.problems)


def test_a_starting_daemon_catches_up_a_missed_slot_and_otherwise_waits_for_the_next() -> None:
    weekdays = trigger("0 9 * * 1-5", UTC)
    assert first_cycle_at(weekdays, None, MONDAY) == MONDAY  # no cycle ever ran: at once
    friday = datetime(2026, 12, 4, 9, 0, 5, tzinfo=UTC)
    assert first_cycle_at(weekdays, friday, MONDAY) == datetime(2026, 12, 7, 9, tzinfo=UTC)  # a deploy at 08:00
    at_ten = MONDAY + timedelta(hours=2)
    assert first_cycle_at(weekdays, friday, at_ten) == at_ten  # down through Monday's 09:00: catch up
    this_morning = datetime(2026, 12, 7, 9, 0, 3, tzinfo=UTC)
    assert first_cycle_at(weekdays, this_morning, at_ten) == datetime(2026, 12, 8, 9, tzinfo=UTC)


def test_the_daemon_schedules_its_first_cycle_from_the_state(tmp_path: Path) -> None:
    path = tmp_path / "crmsync.toml"
    path.write_text(f'[schedule]\ncron = "0 3 * * *"\n{SHOP}')
    loaded = load_config(path)
    store = StateStore(loaded.state_url())

    def first_in() -> timedelta:
        _, first = _schedule_trigger(loaded.config.schedule, store)
        return first - datetime.now(UTC)

    def ran(at: datetime, status: str | None) -> None:
        run = store.begin_run("run", at)
        if status is not None:  # None: its process was killed, the run stays `running`
            store.finish_run(run, status, {}, at)

    try:
        assert abs(first_in().total_seconds()) < 60  # nothing ran yet: at once
        now = datetime.now(UTC)
        slot = now.replace(hour=3, minute=0, second=0, microsecond=0)
        slot -= timedelta(days=1) if slot > now else timedelta(0)  # the latest 03:00 slot
        ran(slot - timedelta(days=1), "ok")
        for status in ("interrupted", None):
            # the cycle of the latest slot was stopped part-way (a deploy), or killed: catch up
            ran(slot, status)
            assert abs(first_in().total_seconds()) < 60
        ran(slot + timedelta(seconds=2), "failed")  # it ran to its end: wait for the next slot
        assert store.last_started("run") == slot + timedelta(seconds=2)
        assert abs((datetime.now(UTC) + first_in() - (slot + timedelta(days=1))).total_seconds()) < 60
    finally:
        store.close()


def test_the_day_after_the_clocks_change_is_not_skipped() -> None:
    """APScheduler 3, asked before the change on the day the clocks go forward, answered a day
    late: `30 0 * * *` in New York ran on 9 March 2025 and next on the 11th, not the 10th."""
    from zoneinfo import ZoneInfo

    new_york = ZoneInfo("America/New_York")
    made = trigger("30 0 * * *", new_york)
    ran = datetime(2025, 3, 9, 0, 30, tzinfo=new_york)
    assert made.get_next_fire_time(ran, ran + timedelta(seconds=5)) == datetime(2025, 3, 10, 4, 30, tzinfo=UTC)
    amsterdam = ZoneInfo("Europe/Amsterdam")
    asked = datetime(2025, 3, 30, 0, 59, 30, tzinfo=UTC).astimezone(amsterdam)  # 01:59:30 CET, the day of
    at = trigger("30 0 * * *", amsterdam).get_next_fire_time(None, asked)
    assert at == datetime(2025, 3, 30, 22, 30, tzinfo=UTC)  # 00:30 CEST on the 31st
