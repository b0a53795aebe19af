"""The segment health report over a real state file: history across runs, flags, churn, flows."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from mapping.model import Kind, Membership, Rejection, SourceRecord
from mapping.segments import SegmentSettings
from sync.report import build_report, report_tables
from sync.report_html import render_html
from sync.state import StateStore, VerdictChunk

DAY0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
SETTINGS = SegmentSettings(
    rules=[{"name": "vip", "when": "revenue > 1000"}],
    health={"min_size": 2, "min_share": 0.0, "min_stability": 0.8, "max_overlap": 0.9, "window_days": 30},
    labels={"friends": "vrienden"},
)

RUN1 = {
    "p1": {"friends", "lifecycle-active"},
    "p2": {"friends", "lifecycle-active"},
    "p3": {"supporters", "lifecycle-active"},
    "p4": {"supporters", "lifecycle-active"},
    "p5": {"passers-by", "lifecycle-prospect"},
    "p6": {"passers-by", "lifecycle-new", "vip"},
}
RUN2 = {
    **RUN1,
    "p2": {"acquaintances", "lifecycle-at-risk"},  # was a friend; last ordered in the shop
    "p3": {"supporters", "lifecycle-lapsed"},  # straight from active to lapsed; last ordered via the CRM
    "p6": {"passers-by", "lifecycle-active", "vip"},
}
RUN3 = {**RUN2, "p7": {"passers-by", "lifecycle-prospect"}}  # a new profile
LAST_SYSTEM = {"p1": "shop", "p2": "shop", "p3": "crm", "p4": "shop", "p5": None, "p6": "shop", "p7": None}


def record(store: StateStore, seq: int, at: datetime, members: dict[str, set[str]]) -> None:
    names = SETTINGS.segment_names()
    snapshot = [(name, sum(name in segs for segs in members.values()), 0) for name in names]
    snapshot = [(name, size, size * 10_000) for name, size, _ in snapshot]
    store.record_segments(seq, at, members, snapshot, {}, (len(members), 70_000))
    verdicts = [
        (pid, Membership(frozenset(segs), None), {"last_order_system": LAST_SYSTEM[pid]})
        for pid, segs in members.items()
    ]
    store.save_profiles({pid: [f"shop:{pid}"] for pid in members}, [VerdictChunk.of(verdicts)], {}, seq)


@pytest.fixture
def store(tmp_path: Path) -> StateStore:
    store = StateStore(f"sqlite:///{tmp_path / 'state.db'}")
    record(store, 1, DAY0, RUN1)
    record(store, 2, DAY0 + timedelta(days=40), RUN2)
    record(store, 3, DAY0 + timedelta(days=41), RUN3)

    def reject(record: SourceRecord) -> Rejection:
        return Rejection("no_identifier", "neither email nor phone")

    store.store_page("shop", Kind.CONTACT, [SourceRecord("shop", Kind.CONTACT, "x", DAY0, {})], reject, 3)
    return store


def report(store: StateStore) -> dict[str, object]:
    return build_report(store, SETTINGS, DAY0 + timedelta(days=41, hours=1))


def by_name(doc: dict[str, object]) -> dict[str, dict[str, object]]:
    return {seg["name"]: seg for seg in doc["segments"]}  # type: ignore[attr-defined]


def test_json_shape_follows_contracts(store: StateStore) -> None:
    doc = report(store)
    assert {"segments", "quarantine"} <= set(doc)
    for seg in doc["segments"]:  # type: ignore[attr-defined]
        assert set(seg) == {"name", "size", "share", "revenue_share", "stability", "max_overlap", "growth", "flags"}
        assert set(seg["max_overlap"]) == {"with", "jaccard"}
    assert doc["quarantine"] == {"by_reason": {"no_identifier": 1}, "by_system": {"shop": 1}}
    assert [s["name"] for s in doc["segments"]][:4] == ["friends", "supporters", "acquaintances", "passers-by"]  # type: ignore[attr-defined]


def test_sizes_shares_growth_and_stability_by_hand(store: StateStore) -> None:
    doc = report(store)
    segs = by_name(doc)
    assert doc["profiles"] == 7
    assert (segs["passers-by"]["size"], segs["passers-by"]["share"], segs["passers-by"]["growth"]) == (3, 0.428571, 1)
    assert segs["passers-by"]["revenue_share"] == pytest.approx(30_000 / 70_000, abs=1e-6)
    # friends: run 2 had p1, still there -> 1.0; 30+ days ago (run 1) p1 and p2, only p1 stayed -> 0.5
    assert segs["friends"]["stability"] == 1.0
    assert doc["details"]["friends"]["stability_window"] == 0.5  # type: ignore[index]
    # active: run 1 had p1-p4; p1 and p4 stayed without a break (p6 came later) -> 0.5
    assert doc["details"]["lifecycle-active"]["stability_window"] == 0.5  # type: ignore[index]
    assert segs["lifecycle-new"]["stability"] is None  # empty at the previous run: nothing to keep
    assert doc["details"]["friends"]["label"] == "vrienden"  # type: ignore[index]
    assert doc["matrix"]["friends"]["count"] == 1 and doc["matrix"]["passers-by"]["count"] == 3  # type: ignore[index]


def test_flags_too_small_unstable_and_overlapping_with_reasons(store: StateStore) -> None:
    doc = report(store)
    segs = by_name(doc)
    assert segs["vip"]["flags"] == ["too-small"]  # 1 member, minimum 2
    assert "too few people to act on: 1 (fewer than 2)" in doc["details"]["vip"]["reasons"]  # type: ignore[index]
    assert "unstable" in segs["friends"]["flags"]
    reasons = doc["details"]["friends"]["reasons"]  # type: ignore[index]
    assert any("changes a lot from run to run: 50% of the people of 30 days ago" in r for r in reasons), reasons
    # acquaintances and at-risk are exactly the same people (p2)
    assert segs["acquaintances"]["max_overlap"] == {"with": "lifecycle-at-risk", "jaccard": 1.0}
    assert "overlapping" in segs["acquaintances"]["flags"] and "overlapping" in segs["lifecycle-at-risk"]["flags"]
    assert any("mostly the same people as" in r for r in doc["details"]["acquaintances"]["reasons"])  # type: ignore[index]
    assert segs["supporters"]["flags"] == []  # 2 members, both kept, overlap 1/3 with lifecycle-active at most


def test_churn_says_from_which_stage_quadrant_and_system_people_left(store: StateStore) -> None:
    churn = report(store)["churn"]
    assert churn["total"] == 2  # type: ignore[index]
    assert churn["into"] == {"lifecycle-at-risk": 1, "lifecycle-lapsed": 1}  # type: ignore[index]
    assert churn["from_lifecycle"] == {"lifecycle-active": 2}  # type: ignore[index]
    assert churn["from_quadrant"] == {"friends": 1, "supporters": 1}  # type: ignore[index]
    assert churn["from_system"] == {"crm": 1, "shop": 1}  # type: ignore[index]


def test_lifecycle_flows_pair_exits_with_entries(store: StateStore) -> None:
    flows = report(store)["flows"]["lifecycle"]  # type: ignore[index]
    assert flows == [
        {"from": None, "to": "lifecycle-prospect", "count": 1},  # p7, seen for the first time
        {"from": "lifecycle-active", "to": "lifecycle-at-risk", "count": 1},
        {"from": "lifecycle-active", "to": "lifecycle-lapsed", "count": 1},
        {"from": "lifecycle-new", "to": "lifecycle-active", "count": 1},
    ]


def test_history_closes_stints_of_profiles_that_disappear(store: StateStore) -> None:
    record(store, 4, DAY0 + timedelta(days=42), {pid: segs for pid, segs in RUN3.items() if pid != "p1"})
    assert "p1" not in store.current_members()
    assert by_name(build_report(store, SETTINGS, DAY0 + timedelta(days=42)))["friends"]["stability"] == 0.0


def test_an_empty_state_gives_an_empty_report(tmp_path: Path) -> None:
    empty = StateStore(f"sqlite:///{tmp_path / 'empty.db'}")
    doc = build_report(empty, SETTINGS, DAY0)
    assert doc["segments"] == [] and doc["quarantine"] == {"by_reason": {}, "by_system": {}}
    page = render_html(doc)
    assert "No run recorded yet" in page and 'class="bar"' not in page


def test_terminal_and_html_views_carry_the_numbers(store: StateStore) -> None:
    from rich.console import Console

    doc = report(store)
    console = Console(width=200, record=True)
    console.print(report_tables(doc))
    text = console.export_text()
    assert "vrienden" in text and "too few people to act on: 1" in text and "lifecycle-at-risk" in text
    page = render_html(doc)
    assert page.count('class="bar"') == len(doc["segments"])  # type: ignore[arg-type]
    assert 'data-quadrant="friends" data-count="1"' in page
    assert "http://" not in page and "https://" not in page and "<script" not in page  # self-contained


def test_run_labels_stay_readable_on_day_one() -> None:
    from sync.report_html import run_labels

    same_day = ["2026-12-04T09:00:00+00:00", "2026-12-04T13:30:00+00:00", "2026-12-05T09:00:00+00:00"]
    labels = run_labels(same_day)
    assert len(set(labels)) == 3  # no two runs read the same
    assert labels[2] == labels[2][:10] and len(labels[0]) > 10  # a date alone where it is enough


def test_held_contacts_still_carrying_crmsync_tags_are_reported(store: StateStore) -> None:
    """crmsync writes to no record it cannot read: a contact held after crmsync tagged it keeps the
    tags as last written. The report counts such records per system and says so in words; one
    whose last written state holds nothing of crmsync's, or that reads cleanly again, is not
    counted."""
    from mapping.model import Contact, RemoteState, WriteBack, WriteResult

    def clean(record: SourceRecord) -> Contact:
        return Contact(record.system, record.id, DAY0, email=f"{record.id}@x.nl")

    def held(record: SourceRecord) -> Rejection:
        return Rejection("too_long", "firstName: longer than any name")

    tagged = RemoteState(frozenset({"crmsync:friends"}))
    emptied = RemoteState(frozenset(), {"crmsync_segments": ""})
    people = [SourceRecord("crm", Kind.CONTACT, rid, DAY0, {"v": 1}) for rid in ("a", "b", "c")]
    store.store_page("crm", Kind.CONTACT, people, clean, 4)
    store.record_results(
        "crm",
        [WriteBack("crm", "a", ("crmsync:friends",), (), {}, tagged), WriteBack("crm", "b", (), (), {}, emptied)],
        [WriteResult("a", True), WriteResult("b", True)],
        4,
        DAY0,
    )
    assert report(store)["frozen"] == {}
    changed = [SourceRecord("crm", Kind.CONTACT, rid, DAY0, {"v": 2}) for rid in ("a", "b", "c")]
    store.store_page("crm", Kind.CONTACT, changed, held, 5)
    doc = report(store)
    assert doc["frozen"] == {"crm": 1}  # a: tagged; b: nothing of ours left; c: never written
    assert doc["quarantine"]["by_system"] == {"crm": 3, "shop": 1}  # type: ignore[index]
    words = " ".join(str(part) for part in report_tables(doc).renderables)
    assert "1 held contact records still carry crmsync's tags or fields as it last wrote them (crm 1)" in words
    assert 'id="frozen"' in render_html(doc)
    store.store_page("crm", Kind.CONTACT, [SourceRecord("crm", Kind.CONTACT, "a", DAY0, {"v": 3})], clean, 6)
    assert report(store)["frozen"] == {}


def test_a_region_segment_that_empties_or_appears_has_its_growth_and_stays_reported(tmp_path: Path) -> None:
    """Segments named from the data (region-*) are recorded only at runs where they have members.
    p2 moves from Drenthe to Antwerp: region-nl-dr had 1 member and has none (reported, -1, none
    kept), region-be-van had none and has 1 (+1, as the history's 0 -> 1 says), not "unknown"."""
    settings = SegmentSettings(
        bases={"enabled": ["region"]}, health={"min_size": 0, "min_share": 0.0, "window_days": 30}
    )
    store = StateStore(f"sqlite:///{tmp_path / 'state.db'}")
    runs = [
        {"p1": {"passers-by", "region-nl-nh"}, "p2": {"passers-by", "region-nl-dr"}},
        {"p1": {"passers-by", "region-nl-nh"}, "p2": {"passers-by", "region-be-van"}},
    ]
    for seq, members in enumerate(runs, 1):
        regions = sorted({s for segs in members.values() for s in segs if s.startswith("region-")})
        names = [*settings.segment_names(), *regions]  # as the assessment names them: regions found
        snapshot = [(n, sum(n in segs for segs in members.values()), 0) for n in names]
        store.record_segments(seq, DAY0 + timedelta(days=seq), members, snapshot, {}, (2, 0))
    doc = build_report(store, settings, DAY0 + timedelta(days=3))
    store.close()
    segs = by_name(doc)
    assert doc["history"]["sizes"]["region-be-van"] == [0, 1]  # type: ignore[index]
    assert (segs["region-be-van"]["size"], segs["region-be-van"]["growth"]) == (1, 1)
    assert segs["region-be-van"]["stability"] is None  # empty at the previous run: nothing to keep
    assert (segs["region-nl-dr"]["size"], segs["region-nl-dr"]["growth"], segs["region-nl-dr"]["stability"]) == (
        0,
        -1,
        0.0,
    )
    assert (segs["region-nl-nh"]["growth"], segs["region-nl-nh"]["stability"]) == (0, 1.0)
    assert segs["passers-by"]["growth"] == 0


def test_revenue_at_stake_counts_the_members_the_sizes_count_after_a_dry_run(tmp_path: Path) -> None:
    """A dry run (`sync --dry-run`, `plan`) saves its verdicts in `profiles` without recording a
    run. The report's sizes are the last recorded run's; the 12-month revenue at stake beside them
    must be the revenue of those same members, not of the dry run's segments."""
    from sync.report_guide import revenue_12m

    store = StateStore(f"sqlite:///{tmp_path / 'state.db'}")
    run = {"p1": {"friends", "lifecycle-active"}, "p2": {"supporters", "lifecycle-active"}}
    store.record_segments(1, DAY0, run, [("friends", 1, 0), ("supporters", 1, 0)], {}, (2, 0))
    spend = {"p1": '{"spend_12m": "300.00"}', "p2": '{"spend_12m": "40.00"}'}

    def save(members: dict[str, set[str]], seq: int) -> None:
        verdicts = [(pid, Membership(frozenset(segs), None), spend[pid]) for pid, segs in members.items()]
        store.save_profiles({pid: [f"shop:{pid}"] for pid in members}, [VerdictChunk.of(verdicts)], {}, seq)

    save(run, 1)
    save({"p1": {"friends", "lifecycle-lapsed"}, "p2": {"passers-by", "lifecycle-lapsed"}}, 2)  # the dry run
    at_stake = revenue_12m(store.profile_segments_and_traits())
    store.close()
    assert at_stake == {"friends": 300.0, "lifecycle-active": 340.0, "supporters": 40.0}


def test_the_demo_names_its_segments_as_the_dutch_report_does() -> None:
    """One Dutch name per segment: the demo's config gives the report's names (the background
    notes' `voorbijgangers`), for every quadrant and lifecycle stage it makes."""
    import tomllib

    from sync.demo_run import DEMO_LABELS
    from sync.report_guide import DUTCH_LABELS

    labels = tomllib.loads(DEMO_LABELS)["segments"]["labels"]
    quadrants = {"friends", "supporters", "acquaintances", "passers-by"}
    stages = {f"lifecycle-{stage}" for stage in ("prospect", "new", "active", "at-risk", "lapsed")}
    assert set(labels) == quadrants | stages
    assert labels == {name: DUTCH_LABELS[name] for name in labels}
    assert labels["passers-by"] == "voorbijgangers"


@pytest.mark.parametrize("zone", [None, "Europe/Amsterdam"])
def test_the_run_of_window_days_ago_is_counted_on_the_merchants_calendar(tmp_path: Path, zone: str | None) -> None:
    """The report of 2 December 08:00 in Amsterdam (07:00 UTC): the run of 2 November 09:00 local
    is 30 days old on the merchant's calendar (30 midnights passed), though 23 hours short of 30
    24-hour periods. With `[segments] timezone` set it is the run of `window_days` ago; without,
    there is none yet, as before. The document, the terminal and the page name the zone."""
    from rich.console import Console

    settings = SETTINGS.model_copy(update={"timezone": zone})
    store = StateStore(f"sqlite:///{tmp_path / 'state.db'}")
    record(store, 1, datetime(2026, 11, 2, 8, tzinfo=UTC), RUN1)
    record(store, 2, datetime(2026, 11, 20, 8, tzinfo=UTC), RUN2)
    record(store, 3, datetime(2026, 12, 1, 8, tzinfo=UTC), RUN3)
    doc = build_report(store, settings, datetime(2026, 12, 2, 7, tzinfo=UTC))
    details = doc["details"]
    runs = doc["runs"]
    console = Console(width=200, record=True)
    console.print(report_tables(doc))
    text = console.export_text()
    page = render_html(doc)
    if zone:
        assert runs["window"] == {"seq": 1, "at": "2026-11-02T08:00:00+00:00"}  # type: ignore[index]
        assert details["friends"]["stability_window"] == 0.5  # type: ignore[index]  # p1 and p2 then, p1 now
        assert doc["churn"]["total"] == 2  # type: ignore[index]  # the moves of run 2 (p2, p3)
        assert doc["timezone"] == "Europe/Amsterdam"
        # the latest run at 09:00 local, and the zone named, on the terminal and on the page
        assert "run of 2026-12-01 09:00:00 CET" in text and "calendar of Europe/Amsterdam" in text
        assert "2026-12-01 09:00:00 CET" in page and "calendar of Europe/Amsterdam" in page
    else:
        assert runs["window"] is None  # type: ignore[index]
        assert details["friends"]["stability_window"] is None  # type: ignore[index]
        assert doc["timezone"] == "UTC"
        assert "calendar of" not in text and "calendar of" not in page
    store.close()


def test_the_run_labels_are_the_merchants_dates() -> None:
    """A run at 23:30 UTC on 31 October is on 1 November in Amsterdam: the axis says so."""
    from zoneinfo import ZoneInfo

    from sync.report_html import run_labels

    stamps = ["2026-10-31T23:30:00+00:00", "2026-11-02T12:00:00+00:00"]
    assert run_labels(stamps, ZoneInfo("Europe/Amsterdam")) == ["2026-11-01", "2026-11-02"]
