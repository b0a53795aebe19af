"""`[schedule] cron` is read as cron reads it (sync/cron.py): weekday numbers from Sunday (0 and 7),
either the day of the month or the weekday when both are restricted, on `[schedule] timezone`'s
clock; a line that is out of range or never fires, and a `max_staleness` the schedule cannot keep,
are config errors before any daemon starts; a starting daemon catches up a slot it missed and
otherwise waits for the next one."""

from __future__ import annotations

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
        previous, now = at, at + timedelta(seconds=1)
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
    assert longest_wait(trigger("0 9 * * *", AMSTERDAM), MONDAY) == timedelta(hours=25)
    assert longest_wait(trigger("0 9 * * 1-5", UTC), MONDAY) == timedelta(days=3)
    assert longest_wait(trigger("*/15 * * * *", UTC), MONDAY) == timedelta(minutes=15)


@pytest.mark.parametrize(
    ("schedule", "said"),
    [
        ('cron = "0 0 31 2 *"', "schedule.cron: '0 0 31 2 *' never fires"),
        ('cron = "61 * * * *"', "schedule.cron: error validating expression '61'"),
        ('cron = "0 9 * * 8"', "schedule.cron: weekday 8 is not 0-7"),
        ('cron = "0 9 * * 5-1"', "schedule.cron: weekday range '5-1' runs backwards"),
        ('cron = "0 9 * * *"\ntimezone = "Europe/Amsterdm"', "schedule.timezone: unknown time zone 'Europe/Amsterdm'"),
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
    try:
        started = datetime.now(UTC)
        _, first = _schedule_trigger(loaded.config.schedule, store)
        assert abs((first - started).total_seconds()) < 60  # nothing ran yet: at once
        run = store.begin_run("run", started)
        store.finish_run(run, "ok", {}, started)
        _, first = _schedule_trigger(loaded.config.schedule, store)
        slot = first.astimezone(UTC)
        assert (slot.hour, slot.minute) == (3, 0) and timedelta(0) < slot - started <= timedelta(days=1)
    finally:
        store.close()
