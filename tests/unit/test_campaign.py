"""`report --campaign` (sync/campaign.py) against a hand computation on a small state, and the
member list of `report --members` (sync/members.py), holdout left out."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import typer

from mapping.calendar_days import Calendar
from mapping.model import Contact, Kind, Membership, Order, SourceRecord
from sync import cli_support
from sync.campaign import UnknownSegment, campaign_report, window_start
from sync.cli_report import campaign_view
from sync.cli_support import Common, LogLevel
from sync.config import LoadedConfig, load_config
from sync.members import member_rows, to_csv
from sync.state import StateStore, VerdictChunk

SINCE = datetime(2026, 11, 1, tzinfo=UTC)
UNTIL = datetime(2026, 12, 1, tzinfo=UTC)
CONFIG = """
[state]
url = "sqlite:///crmsync.db"
[segments]
holdout = { "win-back" = 0.5 }
[[segments.rules]]
name = "win-back"
when = "order_count > 0"
[systems.shop]
type = "woocommerce"
base_url = "http://127.0.0.1:9"
consumer_key = "ck_test"
consumer_secret = "cs_test"
"""
# With a holdout of 0.5 on "win-back", p_a and p_e are held out; p_b, p_f, p_g are not (pinned in
# tests/unit/test_holdout.py's way: the hash of segment and profile id).
PEOPLE = {"1": ("p_a", "anna@x.nl"), "2": ("p_b", "bram@x.nl"), "5": ("p_e", "eva@x.nl"), "6": ("p_f", "fee@x.nl")}
PEOPLE["7"] = ("p_g", "gijs@x.nl")
# order -> (customer, euros, placed, counts)
ORDERS = {
    "o1": ("1", "100.00", "2026-11-10", True),  # p_a (holdout), in the window
    "o2": ("2", "50.00", "2026-11-05", True),  # p_b (tagged), in the window
    "o3": ("2", "30.00", "2026-11-20", False),  # p_b, cancelled: never counts
    "o4": ("2", "70.00", "2026-10-15", True),  # p_b, the window before
    "o5": ("6", "20.00", "2026-11-25", True),  # p_f (tagged), in the window
    "o6": ("6", "999.00", "2026-12-02", True),  # p_f, after the window
    "o7": ("7", "40.00", "2026-10-10", True),  # p_g, the window before
}
# Stays in "win-back": (profile, entered, exited)
HISTORY = [
    ("p_a", "2026-10-25T00:00:00+00:00", None),
    ("p_b", "2026-09-01T00:00:00+00:00", None),
    ("p_e", "2026-11-15T00:00:00+00:00", None),
    ("p_f", "2026-11-02T00:00:00+00:00", "2026-11-28T00:00:00+00:00"),
    ("p_g", "2026-09-15T00:00:00+00:00", "2026-10-20T00:00:00+00:00"),
]


def _contact(record: SourceRecord) -> Contact:
    return Contact(record.system, record.id, UNTIL, email=record.payload["email"], given_name="Jan", family_name="Berg")


def _order(record: SourceRecord) -> Order:
    customer, euros, placed, counts = record.payload["order"]
    # A date alone is an order at noon UTC; a full time is taken as written.
    created = datetime.fromisoformat(placed) if "T" in placed else datetime.fromisoformat(placed).replace(hour=12)
    created = created.replace(tzinfo=created.tzinfo or UTC)
    return Order(record.system, record.id, customer, None, Decimal(euros), "EUR", created, counts)


@pytest.fixture
def state(tmp_path: Path) -> tuple[LoadedConfig, StateStore]:
    return _state(tmp_path, CONFIG)


def _state(tmp_path: Path, config: str) -> tuple[LoadedConfig, StateStore]:
    (tmp_path / "crmsync.toml").write_text(config)
    loaded = load_config(tmp_path / "crmsync.toml")
    store = StateStore(loaded.state_url())
    contacts = [SourceRecord("shop", Kind.CONTACT, cid, UNTIL, {"email": e}) for cid, (_, e) in PEOPLE.items()]
    store.store_page("shop", Kind.CONTACT, contacts, _contact, 1)
    orders = [SourceRecord("shop", Kind.ORDER, oid, UNTIL, {"order": o}) for oid, o in ORDERS.items()]
    store.store_page("shop", Kind.ORDER, orders, _order, 1)
    member = Membership(frozenset({"win-back"}), None)
    verdicts = [VerdictChunk.of([(pid, member, "{}") for pid, _ in PEOPLE.values()])]
    store.save_profiles({pid: [f"shop:{cid}"] for cid, (pid, _) in PEOPLE.items()}, verdicts, {}, 1)
    with store.db.writing() as conn:
        conn.exec_driver_sql("DELETE FROM segment_history")
        for seq, (pid, entered, exited) in enumerate(HISTORY, 1):
            conn.exec_driver_sql(
                "INSERT INTO segment_history (profile_id, segment, entered_seq, entered_at, exited_seq, exited_at) "
                "VALUES (?, 'win-back', ?, ?, ?, ?)",
                (pid, seq, entered, None if exited is None else seq + 100, exited),
            )
    return loaded, store


def test_the_campaign_figures_match_a_hand_computation(state: tuple[LoadedConfig, StateStore]) -> None:
    loaded, store = state
    doc = campaign_report(store, loaded.config, "win-back", SINCE, UNTIL)
    # In the window: p_a, p_b, p_e, p_f (p_g left before it). Held out: p_a, p_e.
    assert doc["tagged"] == {"people": 2, "orders": 2, "revenue": 70.0, "conversion": 1.0}  # o2 + o5
    assert doc["holdout"] == {"people": 2, "orders": 1, "revenue": 100.0, "conversion": 0.5}  # o1
    # The 30 days before: tagged members p_b and p_g (p_a was held out), with o4 and o7.
    previous = doc["previous_window"]
    assert (previous["since"], previous["until"]) == ("2026-10-02T00:00:00+00:00", "2026-11-01T00:00:00+00:00")
    assert {k: previous[k] for k in ("people", "orders", "revenue", "conversion")} == {
        "people": 2,
        "orders": 2,
        "revenue": 110.0,
        "conversion": 1.0,
    }
    assert doc["lift"] == {"conversion_points": 50.0, "revenue_per_person": -15.0}  # 35 - 50 per person
    assert doc["segment"] == "win-back" and doc["holdout_share"] == 0.5
    with pytest.raises(UnknownSegment):
        campaign_report(store, loaded.config, "no-such", SINCE, UNTIL)
    store.close()


def test_the_member_list_leaves_the_holdout_out(state: tuple[LoadedConfig, StateStore]) -> None:
    loaded, store = state
    rows = member_rows(store, loaded.config, "win-back")
    store.close()
    assert [row["profile_id"] for row in rows] == ["p_b"]  # open stays: p_a, p_b, p_e; p_a and p_e held out
    assert rows[0] == {
        "profile_id": "p_b",
        "email": "bram@x.nl",
        "given_name": "Jan",
        "family_name": "Berg",
        "systems": "shop",
        "member_since": "2026-09-01T00:00:00+00:00",
    }
    text = to_csv([*rows, {**rows[0], "given_name": "=HYPERLINK(1)"}])
    assert text.splitlines()[0] == "profile_id,email,given_name,family_name,systems,member_since"
    assert "'=HYPERLINK(1)" in text  # a formula is text in a spreadsheet
    # a tab or carriage return before a formula is skipped by some spreadsheets (OWASP's list)
    for lead in ("\t", "\r"):
        cell = next(csv.DictReader(io.StringIO(to_csv([{**rows[0], "family_name": f"{lead}=1+1"}]))))["family_name"]
        assert cell == f"'{lead}=1+1"
    # a carriage return inside a name is quoted, as RFC 4180 says (CRLF between rows)
    assert '"Berg\rJansen"' in to_csv([{**rows[0], "family_name": "Berg\rJansen"}])


def test_since_is_a_date_before_now() -> None:
    assert window_start("2026-11-01", UNTIL) == SINCE
    # a time after "T" or a space, as ISO 8601 allows, in any zone
    assert window_start("2026-11-01 01:00:00+01:00", UNTIL) == window_start("2026-11-01T00:00:00Z", UNTIL) == SINCE
    for bad in ("2026-12-01", "yesterday", "2027-01-01"):
        with pytest.raises(ValueError, match="--since"):
            window_start(bad, UNTIL)


def test_a_profile_merged_away_counts_once_under_the_profile_that_holds_it_now(
    state: tuple[LoadedConfig, StateStore],
) -> None:
    """p_z was in the segment during the window, then merged into p_b (alias p_z -> p_b): one
    person, whose orders are p_b's now. Counted as a person of its own it would add someone who
    never buys (its orders moved to p_b) and lower the conversion."""
    loaded, store = state
    with store.db.writing() as conn:
        conn.exec_driver_sql(
            "INSERT INTO segment_history (profile_id, segment, entered_seq, entered_at, exited_seq, exited_at) "
            "VALUES ('p_z', 'win-back', 50, '2026-10-01T00:00:00+00:00', 60, '2026-11-20T00:00:00+00:00')"
        )
        conn.exec_driver_sql("INSERT INTO profile_aliases (alias, profile_id, seq) VALUES ('p_z', 'p_b', 60)")
    doc = campaign_report(store, loaded.config, "win-back", SINCE, UNTIL)
    store.close()
    assert doc["tagged"] == {"people": 2, "orders": 2, "revenue": 70.0, "conversion": 1.0}  # p_b, p_f as before
    previous = doc["previous_window"]
    assert (previous["people"], previous["conversion"]) == (2, 1.0)  # p_b (also as p_z) and p_g


AMSTERDAM = Calendar(ZoneInfo("Europe/Amsterdam"))


def test_since_reads_a_date_or_a_clock_time_on_the_merchants_calendar() -> None:
    # 1 November 2026 in Amsterdam is CET (UTC+1): its midnight is 23:00 UTC the day before.
    assert window_start("2026-11-01", UNTIL, AMSTERDAM) == datetime(2026, 10, 31, 23, tzinfo=UTC)
    # a time without an offset is the merchant's clock time; one with an offset (or Z) keeps it
    assert window_start("2026-11-01T09:00", UNTIL, AMSTERDAM) == datetime(2026, 11, 1, 8, tzinfo=UTC)
    assert window_start("2026-11-01T09:00:00+00:00", UNTIL, AMSTERDAM) == datetime(2026, 11, 1, 9, tzinfo=UTC)
    assert window_start("2026-11-01T09:00:00z", UNTIL, AMSTERDAM) == datetime(2026, 11, 1, 9, tzinfo=UTC)
    # in summer time (UTC+2), and without a zone UTC as before
    assert window_start("2026-07-01", UNTIL, AMSTERDAM) == datetime(2026, 6, 30, 22, tzinfo=UTC)
    assert window_start("2026-11-01T09:00", UNTIL) == datetime(2026, 11, 1, 9, tzinfo=UTC)
    # at 00:00 UTC on 1 December Amsterdam's 1 December is an hour old: a window, where UTC's is not
    assert window_start("2026-12-01", UNTIL, AMSTERDAM) == datetime(2026, 11, 30, 23, tzinfo=UTC)
    with pytest.raises(ValueError, match="not before now"):
        window_start("2026-12-01", UNTIL)
    # the same moment as a result is a UTC datetime, so that the previous window's arithmetic
    # (since - length) is absolute time, not the zone's wall clock
    assert window_start("2026-11-01", UNTIL, AMSTERDAM).tzinfo is UTC


@pytest.mark.parametrize("zone", [None, "Europe/Amsterdam"])
def test_a_campaign_since_a_date_starts_at_the_merchants_midnight(
    tmp_path: Path, zone: str | None, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """p_b (tagged) orders at 00:30 on 1 November in Amsterdam: 23:30 on 31 October in UTC. With
    `[segments] timezone` set, `--since 2026-11-01` is Amsterdam's midnight and the order is in the
    campaign; without it, UTC's midnight, and the order is in the window before, as it always was.
    Through the command, so the config's zone reaches the reading of --since."""
    config = CONFIG.replace("[segments]\n", f'[segments]\ntimezone = "{zone}"\n' if zone else "[segments]\n")
    loaded, store = _state(tmp_path, config)
    late = SourceRecord("shop", Kind.ORDER, "o8", UNTIL, {"order": ("2", "5.00", "2026-10-31T23:30:00+00:00", True)})
    store.store_page("shop", Kind.ORDER, [late], _order, 2)
    store.close()
    monkeypatch.setenv("CRMSYNC_NOW", "2026-12-01T00:00:00Z")
    monkeypatch.setattr(cli_support.OUTPUT, "decided", False)  # Common sets it; give it back

    def run(as_json: bool) -> str:
        with pytest.raises(typer.Exit):
            campaign_view(Common(None, as_json, LogLevel("info"), False), loaded, "win-back", "2026-11-01")
        return capsys.readouterr().out

    doc = json.loads(run(True))
    text = run(False)
    tagged, previous = doc["tagged"], doc["previous_window"]
    if zone:
        assert (tagged["orders"], tagged["revenue"]) == (3, 75.0)  # o2, o5 and the order at 00:30
        assert (previous["orders"], previous["revenue"]) == (2, 110.0)  # o4, o7
        assert doc["timezone"] == "Europe/Amsterdam"
        assert (doc["since"], doc["since_local"]) == ("2026-10-31T23:00:00+00:00", "2026-11-01T00:00:00+01:00")
        assert doc["until_local"] == "2026-12-01T01:00:00+01:00"
        assert previous["until_local"] == "2026-11-01T00:00:00+01:00"
        assert "2026-11-01T00:00:00+01:00 to 2026-12-01T01:00:00+01:00 (Europe/Amsterdam)" in text
    else:
        assert (tagged["orders"], tagged["revenue"]) == (2, 70.0)
        assert (previous["orders"], previous["revenue"]) == (3, 115.0)
        assert doc["timezone"] == "UTC"
        assert doc["since"] == doc["since_local"] == "2026-11-01T00:00:00+00:00"
        assert "2026-11-01T00:00:00+00:00 to 2026-12-01T00:00:00+00:00 (UTC)" in text
