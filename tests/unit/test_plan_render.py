"""`crmsync plan` for people (sync/plan_render.py): a summary per system first, then every record
with name and email, every value whole, readable at 80 columns; and the planned changes behind it
(sync/planner.py `describe`, `PlannedChange.to_json`)."""

from __future__ import annotations

import random
import re
from datetime import UTC, datetime

from rich.cells import cell_len
from rich.console import Console

from connectors.base import Connector
from connectors.registry import connector_class
from mapping.model import RemoteState, WriteBack
from sync.plan_render import print_plan, wrap
from sync.planner import PlannedChange, describe, person_name
from sync.reports import CycleReport, SystemOutcome
from sync.timefmt import for_people

GID = "gid://shopify/Customer/"
LONG_VALUE = "acquaintances,lifecycle-at-risk,tier-platinum,vip-customers-who-buy-every-week-of-the-year"
LONG_EMAIL = "corinne.jansen-oosterhuis@a-rather-long-company-domain.example.org"


def _shop(number: int, add: tuple[str, ...], remove: tuple[str, ...], tier: str | None, **who: str) -> PlannedChange:
    return PlannedChange(
        "shop",
        f"{GID}{number}",
        add,
        remove,
        {"crmsync.loyalty_tier": tier},
        RemoteState(),
        name=who.get("name"),
        email=who.get("email"),
        joins=tuple(sorted(t.removeprefix("crmsync:") for t in add)),
        leaves=tuple(sorted(t.removeprefix("crmsync:") for t in remove)),
    )


def _report(changes: list[WriteBack]) -> CycleReport:
    report = CycleReport("run", True, datetime(2026, 11, 20, 10, 0, 0, 654321, tzinfo=UTC))
    report.systems = {
        "shop": SystemOutcome("shopify"),
        "erp": SystemOutcome("efficy"),
        "till": SystemOutcome("silvasoft"),
        "crm": SystemOutcome("afas", status="failed", error="crm: unreachable"),
    }
    report.changes = changes
    return report


def _changes() -> list[WriteBack]:
    erp_before = {
        "40209": RemoteState(frozenset(), {"CONT$CRMSYNC.SEGMENTS": "friends,lifecycle-new"}),
        "40210": RemoteState(frozenset(), {"CONT$CRMSYNC.SEGMENTS": "passers-by"}),
    }
    erp = describe(
        [
            WriteBack(
                "erp",
                "40209",
                (),
                (),
                {"CONT$CRMSYNC.SEGMENTS": LONG_VALUE, "CONT$CRMSYNC.LOYALTY_TIER": "platinum"},
                RemoteState(),
            ),
            WriteBack(
                "erp", "40210", (), (), {"CONT$CRMSYNC.SEGMENTS": "", "CONT$CRMSYNC.LOYALTY_TIER": None}, RemoteState()
            ),
        ],
        people={"40209": ("Corinne Jansen-Oosterhuis", LONG_EMAIL)},
        before=erp_before,
        tag_prefix="crmsync:",
        segments_field="CONT$CRMSYNC.SEGMENTS",
    )
    zara = {"name": "Zara Kamper", "email": "zara.kamper0@hotmail.com"}
    anna = {"name": "Anna de Vries", "email": "anna@example.nl"}
    return [
        _shop(7000001, ("crmsync:friends", "crmsync:lifecycle-active"), ("crmsync:lifecycle-new",), "gold", **zara),
        _shop(7000000, ("crmsync:friends", "crmsync:tier-gold"), (), "gold", **anna),
        _shop(7000002, ("crmsync:supporters",), ("crmsync:friends",), None, email="no.name@example.com"),
        *erp,
    ]


def _render(changes: list[WriteBack], width: int = 80) -> str:
    console = Console(width=width, record=True, highlight=False, color_system=None)
    print_plan(console, _report(changes))
    return console.export_text()


def test_every_line_fits_80_columns_and_no_value_is_cut() -> None:
    changes = _changes()
    text = _render(changes)
    lines = text.splitlines()
    assert max(cell_len(line) for line in lines) <= 80
    assert "…" not in text and "..." not in text
    for change in changes:
        for tag in (*change.add_tags, *change.remove_tags):
            assert f"+{tag}" in text or f"-{tag}" in text, tag
        for field, value in change.set_fields.items():
            assert field in text
            if value is not None and len(value) < 70:
                assert f'"{value}"' in text, value  # whole, on one line
    # a value longer than a line is folded over lines, never shortened
    assert f'"{LONG_VALUE}"' in "".join(line.strip() for line in lines)
    assert LONG_EMAIL in text  # wraps onto a line of its own beside the id, whole


def test_the_summary_comes_first_with_the_counts_per_segment_and_field() -> None:
    text = _render(_changes())
    lines = text.splitlines()
    first_record = next(i for i, line in enumerate(lines) if line.strip().startswith("7000000"))
    summary = "\n".join(lines[:first_record])
    assert lines[0].startswith("plan of ") and "5 records would change in 2 of 4 systems" in lines[0]

    def rows(system: str) -> dict[str, tuple[str, ...]]:
        block = summary.split(f"\n{system}")[1].split("\n\n")[0]
        return {m[0]: tuple(m[1:]) for m in (line.split() for line in block.splitlines()[1:]) if m}

    shop = rows("shop (shopify): 3 records")
    assert shop["friends"] == ("2", "1")
    assert shop["lifecycle-active"] == ("1", "-") and shop["lifecycle-new"] == ("-", "1")
    assert shop["supporters"] == ("1", "-") and shop["tier-gold"] == ("1", "-")
    assert shop["crmsync.loyalty_tier"] == ("2", "1", '"gold"', "2")  # set on 2 (gold), cleared on 1
    erp = rows("erp (efficy): 2 records")
    # from the segments field's value before and after: one left friends, lifecycle-new, passers-by
    assert erp["friends"] == ("-", "1") and erp["passers-by"] == ("-", "1") and erp["lifecycle-new"] == ("-", "1")
    assert erp["vip-customers-who-buy-every-week-of-the-year"] == ("1", "-") and erp["tier-platinum"] == ("1", "-")
    assert erp["CONT$CRMSYNC.SEGMENTS"] == ("2", "-", "2", "different")
    assert "till (silvasoft): nothing to write" in summary
    assert "crm (afas): not planned (failed)" in summary
    assert summary.index("shop (shopify)") < summary.index("erp (efficy)") < summary.index("till (silvasoft)")


def test_each_record_shows_its_short_id_name_and_email_in_a_stable_order() -> None:
    changes = _changes()
    text = _render(changes)
    assert GID not in text  # the id as Shopify's admin shows it
    heads = [line.strip() for line in text.splitlines() if re.match(r"^  \S", line) and line.strip()[0].isdigit()]
    assert heads[:3] == [
        "7000000  Anna de Vries  anna@example.nl",
        "7000001  Zara Kamper  zara.kamper0@hotmail.com",
        "7000002  no.name@example.com",  # without a name: by email, after the named ones
    ]
    assert heads[3] == "40209  Corinne Jansen-Oosterhuis"
    assert heads[4] == "40210  (no name or email known)"
    block = text.split("7000001  Zara Kamper")[1].split("7000002")[0]
    assert "+crmsync:friends +crmsync:lifecycle-active -crmsync:lifecycle-new" in block
    assert 'crmsync.loyalty_tier = "gold"' in block
    assert "crmsync.loyalty_tier cleared" in text.split("7000002")[1].split("\n  4")[0]
    shuffled = list(changes)
    random.Random(3).shuffle(shuffled)
    assert _render(shuffled) == text


def test_a_narrow_terminal_still_gets_everything() -> None:
    changes = _changes()
    text = _render(changes, width=40)
    lines = text.splitlines()
    assert max(cell_len(line) for line in lines) <= 40
    assert "…" not in text
    joined = "".join(line.strip() for line in lines)
    for change in changes:
        for value in change.set_fields.values():
            if value:
                assert value in joined


def test_wrap_indents_folds_and_keeps_a_wide_gap() -> None:
    assert wrap(["7", "", "Anna", "de", "Vries"], 80, 2, 5) == ["  7  Anna de Vries"]
    assert wrap(["12345", "abcdefghij"], 10, 2, 4) == ["  12345", "    abcdef", "    ghij"]
    assert wrap(["a", "", "b"], 4, 0, 0) == ["a  b"]
    assert wrap(["a", "", "bcd"], 4, 0, 1) == ["a", " bcd"]  # the gap does not start a line
    assert wrap(["名前名前名前"], 8, 2, 2) == ["  名前名", "  前名前"]  # cells, not characters


def test_describe_names_the_person_and_the_segments_from_tags_and_fields() -> None:
    plain = [
        WriteBack("shop", f"{GID}1", ("crmsync:friends",), ("CRMSYNC:Lifecycle-New",), {}, RemoteState()),
        WriteBack("erp", "9", (), (), {"segs": "friends,tier-gold"}, RemoteState()),
    ]
    shop = describe(
        plain[:1], people={f"{GID}1": ("Jan", "jan@x.nl")}, before={}, tag_prefix="crmsync:", segments_field=None
    )
    assert (shop[0].name, shop[0].email, shop[0].joins, shop[0].leaves) == (
        "Jan",
        "jan@x.nl",
        ("friends",),
        ("Lifecycle-New",),
    )
    unknown = describe(plain[1:], people={}, before={}, tag_prefix="crmsync:", segments_field="segs")
    assert (unknown[0].name, unknown[0].joins, unknown[0].leaves) == (None, ("friends", "tier-gold"), ())
    known = {"9": RemoteState(frozenset(), {"segs": "tier-gold,passers-by"})}
    again = describe(plain[1:], people={}, before=known, tag_prefix="crmsync:", segments_field="segs")
    assert (again[0].joins, again[0].leaves) == (("friends",), ("passers-by",))
    assert again[0].target is plain[1].target and again[0].set_fields == plain[1].set_fields
    assert person_name({"given_name": "Jan", "infix": "van der", "family_name": "Berg"}) == "Jan van der Berg"
    assert person_name({"initials": "J.", "family_name": "Berg"}) == "J. Berg"
    assert person_name({"company": "Acme BV"}) == "Acme BV" and person_name({}) is None


def test_a_planned_change_in_json_has_name_and_email_and_whole_values() -> None:
    change = describe(
        [WriteBack("erp", "40209", ("crmsync:a",), (), {"segs": LONG_VALUE, "tier": None}, RemoteState())],
        people={"40209": ("Corinne", LONG_EMAIL)},
        before={},
        tag_prefix="crmsync:",
        segments_field="segs",
    )[0]
    doc = change.to_json()
    assert list(doc) == ["system", "id", "name", "email", "add_tags", "remove_tags", "set_fields"]
    assert doc == {
        "system": "erp",
        "id": "40209",
        "name": "Corinne",
        "email": LONG_EMAIL,
        "add_tags": ["crmsync:a"],
        "remove_tags": [],
        "set_fields": {"segs": LONG_VALUE, "tier": None},
    }
    assert describe([change], people={}, before={}, tag_prefix="x:", segments_field=None)[0].to_json()["name"] is None


def test_a_connector_declares_its_short_ids_and_reads_them_back() -> None:
    shop: type[Connector] = connector_class("shopify")
    assert shop.id_prefix == GID
    assert shop.short_id(f"{GID}7000000") == "7000000"
    assert shop.short_id("7000000") == "7000000" and shop.short_id(GID) == GID  # nothing after it: as stored
    woo = connector_class("woocommerce")
    assert woo.id_prefix == "" and woo.short_id("1029") == "1029"
    from connectors.shopify.client import ShopifyConnector, ShopifySettings

    settings = ShopifySettings(type="shopify", base_url="http://127.0.0.1:9", access_token="shpat_x")
    connector = ShopifyConnector("shop", settings)
    try:
        typed = ("7000000", " 0042 ", f"{GID}7", f"{GID}abc", "gid://shopify/Order/5", "0", "")
        assert [connector.canonical_id(raw) for raw in typed] == [f"{GID}7000000", f"{GID}42", f"{GID}7", *[None] * 4]
        assert connector.canonical_id(shop.short_id(f"{GID}7000000")) == f"{GID}7000000"  # a round trip
    finally:
        connector.close()


def test_the_cycle_summary_and_status_read_whole_at_80_columns_and_as_tables_when_wide() -> None:
    from sync.render import print_report, print_status

    report = _report(_changes())
    report.profiles = 812
    report.systems["erp"].status = "failed"
    report.systems["erp"].error = "erp: GET /contacts: credentials refused"
    report.systems["shop"].read_contacts, report.systems["shop"].read_orders = 500_000, 1_400_000
    report.systems["shop"].planned = 120
    last = {"status": "ok", "finished_at": "2026-11-20T10:00:00.654321+00:00", "counts": {"written": 118}}
    systems = {"shop": {"last": last, "last_ok": last}, "erp": {"last": {**last, "status": "failed", "error": "x"}}}
    narrow = Console(width=80, record=True, color_system=None)
    print_report(narrow, report, "sync")
    print_status(narrow, systems, None, [], None, {})
    text = narrow.export_text()
    assert max(cell_len(line) for line in text.splitlines()) <= 80 and "…" not in text
    lines = text.splitlines()
    shop = lines.index("  shop (shopify)  ok  read 500000 contacts, 1400000 orders · quarantined 0 ·")
    assert lines[shop + 1] == "    planned 120 · written 0 · rejected 0 · calls 0"
    assert "  erp (efficy)  failed  read 0 contacts" in text and "profiles: 812" in text
    finished = for_people(last["finished_at"])
    assert finished in text and "." not in finished  # a time never breaks over lines, never a fraction
    assert f"  erp  failed  finished {finished} · last success never" in text and "error: x" in text
    assert not any(line.startswith("    ·") for line in text.splitlines())  # a separator closes a line
    wide = Console(width=200, record=True, color_system=None)
    print_report(wide, report, "sync")
    print_status(wide, systems, None, [], None, {})
    table = wide.export_text()
    assert "┃ system" in table and "quarantined" in table and "last success" in table and "…" not in table


def test_a_held_mass_absence_and_deleted_contacts_show_in_the_cycle_and_in_status() -> None:
    from sync.render import print_report, print_status

    report = _report(_changes())
    warning = "a full read of shop's contacts left out 40 of the 100 stored contacts, more than absent_share"
    report.systems["shop"].warnings.append(warning)
    report.systems["erp"].deleted = 2
    last = {"status": "ok", "finished_at": "2026-11-20T10:00:00+00:00", "counts": report.systems["shop"].to_json()}
    console = Console(width=200, record=True, color_system=None)
    print_report(console, report, "sync")
    print_status(console, {"shop": {"last": last, "last_ok": last}}, None, [], None, {})
    text = console.export_text()
    assert text.count(f"shop: {warning}") == 2  # the cycle's output, then `status`
    assert "erp: 2 contacts deleted at the vendor left the state" in text
