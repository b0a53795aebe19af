"""The state side of `crmsync forget` (sync/state/erasure.py), on both backends: what an erasure
removes and keeps, that the erased records are never stored again while a record made after the
erasure is, and how targets wait for their vendor."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from mapping.model import (
    Contact,
    Kind,
    Membership,
    Order,
    Rejection,
    RemoteState,
    SourceRecord,
    WriteBack,
    WriteResult,
)
from sync.state import StateStore, VerdictChunk, metadata, segment_history
from sync.state.erasure import HeldFacts, NothingToErase, SharedAbove

NOW = datetime(2026, 12, 4, tzinfo=UTC)
TAGGED = RemoteState(frozenset({"crmsync:friends"}))  # what crmsync writes for "friends" in the shop


def _map(record: SourceRecord) -> Contact | Order:
    payload = record.payload
    if record.kind is Kind.ORDER:
        return Order(record.system, record.id, payload.get("customer"), payload.get("email"), Decimal("10"), "EUR", NOW)
    return Contact(record.system, record.id, record.updated_at, email=payload["email"])


def _contacts(system: str, *pairs: tuple[str, str]) -> list[SourceRecord]:
    return [SourceRecord(system, Kind.CONTACT, rid, NOW, {"email": email}) for rid, email in pairs]


def _orders(system: str, *rows: tuple[str, str | None, str | None]) -> list[SourceRecord]:
    return [
        SourceRecord(system, Kind.ORDER, oid, NOW, {"customer": customer, "email": email})
        for oid, customer, email in rows
    ]


@pytest.fixture
def store(state_url: str) -> Iterator[StateStore]:
    opened = StateStore(state_url)
    yield opened
    opened.close()


def _populate(store: StateStore) -> None:
    """Anna in the shop (1) and the CRM (9), with a customer order, a guest order under her email
    and a pushed tag; Bert (2) with his own order; a guest order of an email two people hold."""
    store.store_page("shop", Kind.CONTACT, _contacts("shop", ("1", "anna@x.nl"), ("2", "bert@x.nl")), _map, 1)
    store.store_page("crm", Kind.CONTACT, _contacts("crm", ("9", "anna@x.nl"), ("8", "co@x.nl")), _map, 1)
    store.store_page("shop", Kind.CONTACT, _contacts("shop", ("3", "co@x.nl")), _map, 1)
    orders = _orders(
        "shop",
        ("o1", "1", "anna@x.nl"),
        ("o2", None, "anna@x.nl"),  # a guest order under her email: hers
        ("o3", "2", "bert@x.nl"),
        ("o4", None, "co@x.nl"),  # a guest order under an email two people's records hold
    )
    store.store_page("shop", Kind.ORDER, orders, _map, 1)
    verdicts = [
        VerdictChunk.of(
            [
                ("p_anna", Membership(frozenset({"friends"}), None), "{}"),
                ("p_bert", Membership(frozenset({"friends"}), None), "{}"),
                ("p_co", Membership(frozenset(), None), "{}"),
                ("p_co2", Membership(frozenset(), None), "{}"),
            ]
        )
    ]
    links = [("crm:9", "shop:1", "email", "anna@x.nl")]
    members = {"p_anna": ["crm:9", "shop:1"], "p_bert": ["shop:2"], "p_co": ["crm:8"], "p_co2": ["shop:3"]}
    store.save_profiles(members, verdicts, {"p_old": "p_anna"}, 1, links)
    tag = RemoteState(frozenset({"crmsync:friends"}))
    store.record_results(
        "shop", [WriteBack("shop", "1", ("crmsync:friends",), (), {}, tag)], [WriteResult("1", True)], 1, NOW
    )
    store.record_results(
        "shop", [WriteBack("shop", "2", ("crmsync:friends",), (), {}, tag)], [WriteResult("2", True)], 1, NOW
    )


def _rows(store: StateStore) -> dict[str, list[tuple[object, ...]]]:
    with store.db.reading() as conn:
        return {
            name: sorted((tuple(row) for row in conn.execute(text(f"SELECT * FROM {name}"))), key=repr)
            for name in sorted(metadata.tables)
        }


def test_an_erasure_removes_the_person_and_keeps_only_salted_hashes(store: StateStore) -> None:
    _populate(store)
    bert_before = {
        name: [row for row in rows if any(v in ("2", "o3", "p_bert", "shop:2") for v in row)]
        for name, rows in _rows(store).items()
    }
    erased = store.erasures.erase(["p_anna"], NOW, {"shop": TAGGED, "crm": RemoteState()})
    assert erased.contacts == {"shop": 1, "crm": 1} and erased.orders == {"shop": 2}
    assert erased.targets == {"shop": 1}  # crmsync neither wrote nor writes anything to the CRM
    rows = _rows(store)
    everything = repr({name: found for name, found in rows.items() if name not in ("erasure_targets",)})
    assert "anna" not in everything and "p_anna" not in everything and "'o1'" not in everything
    assert "'o2'" not in everything and "p_old" not in everything
    assert "'o4'" in everything  # not hers alone
    assert [row[0] for row in rows["profiles"]] == ["p_bert", "p_co", "p_co2"]
    bert_after = {
        name: [row for row in found if any(v in ("2", "o3", "p_bert", "shop:2") for v in row)]
        for name, found in rows.items()
    }
    assert bert_after == bert_before  # nobody else's rows touched
    assert len(rows["forgotten"]) == 2 + 2 + 2  # two contacts, their customer ids, two orders
    assert all(len(row[0]) == 64 for row in rows["forgotten"])
    # The shop record is what is left to clear, with the tag crmsync wrote there.
    (target,) = store.erasures.targets("shop")
    assert target.record_id == "1" and target.known.tags == frozenset({"crmsync:friends"})
    assert not target.known.known  # every owned field is cleared, looked at first where the vendor allows
    assert store.consistency_problems() == []
    assert store.profiles_for(email_key="anna@x.nl") == [] and store.profiles_for(profile="p_old") == []


def test_erased_records_are_never_stored_again_but_a_new_record_is(store: StateStore) -> None:
    _populate(store)
    store.erasures.erase(["p_anna"], NOW, {"shop": TAGGED})
    again = store.store_page("shop", Kind.CONTACT, _contacts("shop", ("1", "anna@x.nl"), ("4", "anna@x.nl")), _map, 2)
    assert again.changed == 1  # record 4, made after the erasure: she came back
    later = _orders("shop", ("o1", "1", "anna@x.nl"), ("o5", "1", "anna@x.nl"), ("o6", "4", "anna@x.nl"))
    assert store.store_page("shop", Kind.ORDER, later, _map, 2).changed == 1  # only o6, of the new record
    with store.db.reading() as conn:
        stored = sorted(conn.execute(text("SELECT system, record_id FROM raw_records WHERE kind = 'contact'")).all())
        ordered = sorted(r[0] for r in conn.execute(text("SELECT order_id FROM orders")).all())
    assert [tuple(r) for r in stored] == [("crm", "8"), ("shop", "2"), ("shop", "3"), ("shop", "4")]
    assert ordered == ["o3", "o4", "o6"]


def test_targets_wait_for_their_vendor_and_the_erasure_completes_when_all_confirmed(store: StateStore) -> None:
    _populate(store)
    erased = store.erasures.erase(["p_anna"], NOW, {"shop": TAGGED, "crm": RemoteState(fields={"seg": "friends"})})
    assert erased.targets == {"shop": 1, "crm": 1}
    shop, crm = store.erasures.targets("shop"), store.erasures.targets("crm")
    store.erasures.failed("crm", crm, "503 from the CRM")
    store.erasures.confirm("shop", shop, NOW + timedelta(minutes=1))
    (pending,) = store.erasures.pending_erasures()
    assert pending["erasure"] == erased.erasure_id
    assert pending["waiting_for"] == {"crm": {"records": 1, "attempts": 1, "last_error": "503 from the CRM"}}
    store.erasures.confirm("crm", store.erasures.targets("crm"), NOW + timedelta(minutes=2))
    assert store.erasures.pending_erasures() == []
    assert store.erasures.target_systems() == []
    with store.db.reading() as conn:
        done = conn.execute(text("SELECT completed_at FROM erasures")).scalar()
    assert done == (NOW + timedelta(minutes=2)).isoformat()


def test_the_salt_is_the_states_own(state_url: str, new_state_url: object) -> None:
    """Two states hash the same record differently: their hashes cannot be matched."""
    hashes = []
    for url in (state_url, new_state_url()):  # type: ignore[operator]
        store = StateStore(url)
        try:
            _populate(store)
            store.erasures.erase(["p_bert"], NOW)
            with store.db.reading() as conn:
                hashes.append({r[0] for r in conn.execute(text("SELECT key_hash FROM forgotten"))})
        finally:
            store.close()
    assert len(hashes[0]) == len(hashes[1]) == 3 and not hashes[0] & hashes[1]


def test_a_write_the_ledger_never_recorded_and_a_system_no_longer_written_still_get_targets(
    store: StateStore,
) -> None:
    """A vendor that carried out a write whose reply was lost (no ledger row), and a system crmsync
    wrote to before write-back was switched off there: both keep crmsync's tags until removed."""
    _populate(store)
    lost = WriteBack("crm", "9", ("crmsync:vip",), (), {}, RemoteState(frozenset({"crmsync:vip"})))
    store.record_results("crm", [lost], [WriteResult("9", True, confirmed=False)], 1, NOW)
    erased = store.erasures.erase(["p_anna"], NOW, {"crm": RemoteState(frozenset({"crmsync:vip"}))})
    assert erased.targets == {"shop": 1, "crm": 1}  # the shop by its ledger row, though not "expected"
    (crm,) = store.erasures.targets("crm")
    assert crm.known.tags == frozenset({"crmsync:vip"})
    (shop,) = store.erasures.targets("shop")
    assert shop.known.tags == frozenset({"crmsync:friends"})


def test_a_system_never_written_gets_no_target_for_what_crmsync_would_write_there(store: StateStore) -> None:
    """Write-back off at a system crmsync never wrote to (no ledger or retry row of that system):
    nothing of crmsync's is there, so what it would write for her segments makes no target, which
    no sync could ever clear. Where it wrote before write-back was switched off, it still does."""
    _populate(store)
    expected = {"crm": TAGGED, "shop": TAGGED}
    erased = store.erasures.erase(["p_anna"], NOW, expected, writable={"shop"})
    assert erased.targets == {"shop": 1}
    assert store.erasures.pending_erasures()[0]["waiting_for"].keys() == {"shop"}
    # The shop's 3 has no ledger row of its own, but crmsync wrote to the shop before write-back was
    # switched off there (Bert's row): a write to it whose reply was lost may have left a tag.
    erased = store.erasures.erase(["p_co2"], NOW, expected, writable=set())
    assert erased.targets == {"shop": 1}


def test_an_address_no_profile_holds_takes_its_guest_orders_and_nothing_else(store: StateStore) -> None:
    """`forget` by an address no profile holds (a guest who never had a customer record): their
    guest orders go, and are never stored again; an address with nothing under it, or one a
    stored contact holds (that is a profile's, found as such), erases nothing and writes nothing."""
    _populate(store)
    store.store_page("shop", Kind.ORDER, _orders("shop", ("o9", None, "gast@x.nl")), _map, 1)
    before = _rows(store)
    for address in ("nobody@x.nl", "co@x.nl"):
        with pytest.raises(NothingToErase):
            store.erasures.erase([], NOW, {}, address=address)
    assert _rows(store) == before  # not even the salt
    erased = store.erasures.erase([], NOW, {}, address="gast@x.nl")
    assert erased.profiles == () and erased.orders == {"shop": 1} and erased.targets == {}
    assert "gast@x.nl" not in repr(_rows(store))
    store.store_page("shop", Kind.ORDER, _orders("shop", ("o9", None, "gast@x.nl")), _map, 2)
    assert "gast@x.nl" not in repr(_rows(store))  # never stored again
    assert store.erasures.pending_erasures() == []


def test_history_under_a_retired_profile_id_goes_too_and_stale_profiles_are_refused(store: StateStore) -> None:
    from sync.state.erasure import StaleProfiles

    _populate(store)
    with store.db.writing() as conn:
        for pid in ("p_anna", "p_old", "p_bert"):
            conn.execute(segment_history.insert().values(profile_id=pid, segment="x", entered_seq=1, entered_at="now"))
    # A record changed after the profiles were computed: who is who may be out of date.
    store.store_page("crm", Kind.CONTACT, _contacts("crm", ("9", "anna@elsewhere.nl")), _map, 2)
    with pytest.raises(StaleProfiles, match="run `crmsync sync`"):
        store.erasures.erase(["p_anna"], NOW)
    with store.db.writing() as conn:
        conn.exec_driver_sql("UPDATE meta SET value = '2' WHERE key = 'profiles_seq'")
    store.erasures.erase(["p_anna"], NOW)
    with store.db.reading() as conn:
        left = sorted(r[0] for r in conn.execute(text("SELECT profile_id FROM segment_history")))
    assert left == ["p_bert"]


def test_a_key_that_matches_two_profiles_erases_nothing(tmp_path: Path) -> None:
    """A landline two people share: `forget` refuses (exit 2 in the CLI) and names both profiles."""
    from sync.config import load_config
    from sync.forget import Ambiguous, forget
    from sync.runtime import Writer

    (tmp_path / "crmsync.toml").write_text(
        '[state]\nurl = "sqlite:///crmsync.db"\n[systems.shop]\ntype = "woocommerce"\n'
        'base_url = "http://127.0.0.1:9"\nconsumer_key = "ck_test"\nconsumer_secret = "cs_test"\n'
    )
    loaded = load_config(tmp_path / "crmsync.toml")
    store = StateStore(loaded.state_url())
    shared = "+31201234567"

    def mapped(record: SourceRecord) -> Contact:
        return Contact("shop", record.id, NOW, email=record.payload["email"], phone=shared, phone_kind="landline")

    store.store_page("shop", Kind.CONTACT, _contacts("shop", ("1", "anna@x.nl"), ("2", "bert@x.nl")), mapped, 1)
    member = Membership(frozenset({"friends"}), None)
    verdicts = [VerdictChunk.of([("p_anna", member, "{}"), ("p_bert", member, "{}")])]
    store.save_profiles({"p_anna": ["shop:1"], "p_bert": ["shop:2"]}, verdicts, {}, 1)
    before = _rows(store)
    with pytest.raises(Ambiguous, match=r"matches 2 profiles .*p_anna.*p_bert"):
        forget(loaded, Writer(store, None), "020 123 4567", threading.Event())
    assert _rows(store) == before
    store.close()


def test_an_abandoned_target_is_dropped_and_the_erasure_completes(store: StateStore) -> None:
    """`forget --abandon`: for a record the vendor deleted, which would fail every retry."""
    _populate(store)
    erased = store.erasures.erase(["p_anna"], NOW, {"shop": TAGGED, "crm": RemoteState(fields={"seg": "x"})})
    assert store.erasures.abandon("no-such-erasure", None, NOW) is None
    assert store.erasures.abandon(erased.erasure_id, "shopp", NOW) is None  # not pending there: nothing given up
    assert {t.record_id for t in store.erasures.targets("crm")} == {"9"}
    assert store.erasures.abandon(erased.erasure_id, "crm", NOW) == {"crm": 1}
    (pending,) = store.erasures.pending_erasures()
    assert set(pending["waiting_for"]) == {"shop"}  # only the system named was given up
    assert store.erasures.abandon(erased.erasure_id, None, NOW) == {"shop": 1}
    assert store.erasures.pending_erasures() == [] and store.erasures.target_systems() == []
    assert store.erasures.abandon(erased.erasure_id, None, NOW) is None  # complete: nothing to abandon


def _held(record: SourceRecord) -> Contact | Order | Rejection:
    """The test mapper, holding back every record marked `bad` (as a real mapping quarantines)."""
    if record.payload.get("bad"):
        return Rejection("wrong_type", "held for the test", record.payload.get("customer"))
    return _map(record)


def _facts(system: str, kind: str, payload: Any) -> HeldFacts:
    """How the test's records name their customer, email, mobile and given name (a connector's
    field map, in forget)."""
    said = (payload.get("customer"), payload.get("email"), payload.get("mobile"), payload.get("name"))
    return HeldFacts(*said, tuple(payload.get("links", ())))


def test_the_quarantined_records_that_are_the_persons_go_too_and_are_never_stored_again(store: StateStore) -> None:
    """A held record is the person's data as much as a mapped one: a contact under their email, an
    order naming their customer record, a guest order under their email. Held records of others,
    and a guest order under an email two people hold, stay."""
    _populate(store)
    held = [
        SourceRecord("shop", Kind.CONTACT, "h1", NOW, {"email": "anna@x.nl", "bad": True, "name": "Anna Held"}),
        SourceRecord("shop", Kind.CONTACT, "h2", NOW, {"email": "bert@x.nl", "bad": True}),
    ]
    store.store_page("shop", Kind.CONTACT, held, _held, 2)
    # Before it was held, crmsync tagged h1; an order names it (mapped: an order is not held for that).
    store.record_results(
        "shop", [WriteBack("shop", "h1", ("crmsync:friends",), (), {}, TAGGED)], [WriteResult("h1", True)], 1, NOW
    )
    store.store_page("shop", Kind.ORDER, _orders("shop", ("o7", "h1", None)), _map, 2)
    orders = [
        SourceRecord("shop", Kind.ORDER, "q1", NOW, {"customer": "1", "email": None, "bad": True}),  # hers
        SourceRecord("crm", Kind.ORDER, "q2", NOW, {"customer": None, "email": "anna@x.nl", "bad": True}),  # hers
        SourceRecord("shop", Kind.ORDER, "q3", NOW, {"customer": "2", "email": "anna@x.nl", "bad": True}),  # Bert's
        SourceRecord("shop", Kind.ORDER, "q4", NOW, {"customer": None, "email": "co@x.nl", "bad": True}),  # shared
        # Her address on an order that names someone else's held record: theirs.
        SourceRecord("shop", Kind.ORDER, "q5", NOW, {"customer": "h2", "email": "anna@x.nl", "bad": True}),
    ]
    store.store_page("shop", Kind.ORDER, [o for o in orders if o.system == "shop"], _held, 2)
    store.store_page("crm", Kind.ORDER, [o for o in orders if o.system == "crm"], _held, 2)
    erased = store.erasures.erase(["p_anna"], NOW, {"shop": TAGGED}, _facts)
    assert erased.quarantined == {"shop": 2, "crm": 1}
    assert erased.orders == {"shop": 3}  # o1, o2 and o7, which names her held record
    assert sorted(t.record_id for t in store.erasures.targets("shop")) == ["1", "h1"]  # the tag comes off h1 too
    with store.db.reading() as conn:
        kept = sorted(tuple(r) for r in conn.execute(text("SELECT system, kind, record_id FROM quarantine")).all())
        payloads = " ".join(str(p) for (p,) in conn.execute(text("SELECT payload FROM raw_records")).all())
    assert kept == [
        ("shop", "contact", "h2"),
        ("shop", "order", "q3"),
        ("shop", "order", "q4"),
        ("shop", "order", "q5"),
    ]
    assert "Anna Held" not in payloads
    again = store.store_page("shop", Kind.CONTACT, held, _held, 3)
    assert again.changed == 0  # h1 is never stored again (h2 is stored and unchanged)
    assert store.store_page("shop", Kind.ORDER, [orders[0]], _held, 3).changed == 0
    # A held order made after the erasure that names one of her erased records is hers: not stored.
    later = [
        SourceRecord("shop", Kind.ORDER, f"q{n}", NOW, {"customer": c, "bad": True}) for n, c in ((8, "1"), (9, "2"))
    ]
    assert store.store_page("shop", Kind.ORDER, later, _held, 3).changed == 1  # q9, Bert's
    # So is one held for an id too long to keep: it still names her customer record.
    long_id = [SourceRecord("shop", Kind.ORDER, d * 300, NOW, {"customer": c}) for d, c in (("9", "1"), ("8", "2"))]
    assert store.store_page("shop", Kind.ORDER, long_id[:1], _map, 3).changed == 0
    assert store.store_page("shop", Kind.ORDER, long_id[1:], _map, 3).changed == 1  # Bert's: held, kept
    assert store.consistency_problems() == []


def _facts_or_fail(system: str, kind: str, payload: Any) -> HeldFacts:
    """`_facts`, except on a payload its field map cannot read at all (`odd`): it raises."""
    if payload.get("odd"):
        raise ValueError("not a record this field map reads")
    return _facts(system, kind, payload)


def test_held_records_that_name_no_one_but_hold_her_address_are_kept_and_named(store: StateStore) -> None:
    """A held record whose field map reads no one in it (no email, number, link or customer, or
    the map raised) is no one's by the rules, and stays; but one whose text holds one of her
    addresses (in any spelling with her match key) is named in the result, so the erasure is
    not thought whole while the state still holds her address. Records the rules decided, hers
    or not, are not named; nor is a held record of hers that names no one itself."""
    _populate(store)
    linking = SourceRecord("crm", Kind.CONTACT, "9", NOW, {"email": "anna@x.nl", "link": "u9"})  # her CRM record
    mapped = Contact("crm", "9", NOW, email="anna@x.nl", links=("shop:u9",))
    store.store_page("crm", Kind.CONTACT, [linking], lambda _: mapped, 2)
    held = [
        SourceRecord("shop", Kind.CONTACT, "u1", NOW, {"bad": True, "note": "call Anna <Anna@X.nl>"}),
        SourceRecord("shop", Kind.CONTACT, "u2", NOW, {"bad": True, "note": "bert@x.nl"}),  # someone else's
        SourceRecord("shop", Kind.CONTACT, "u3", NOW, {"bad": True, "odd": True, "raw": "ANNA@x.nl;"}),  # unreadable
        SourceRecord("shop", Kind.CONTACT, "u4", NOW, {"bad": True, "email": "bert@x.nl", "note": "anna@x.nl"}),
        SourceRecord("shop", Kind.CONTACT, "u5", NOW, {"bad": True, "note": "co@x.nl"}),  # not hers alone
        SourceRecord("shop", Kind.CONTACT, "u9", NOW, {"bad": True, "note": "anna@x.nl"}),  # hers by her link
    ]
    store.store_page("shop", Kind.CONTACT, held, _held, 2)
    gift = {"customer": "2", "email": None, "bad": True}  # Bert's, by the rules: not named
    guest = {"customer": None, "email": None, "bad": True, "gift_for": "anna+birthday@x.nl"}
    orders = [SourceRecord("shop", Kind.ORDER, "g1", NOW, {**gift, "note": "anna@x.nl"})]
    orders.append(SourceRecord("shop", Kind.ORDER, "g2", NOW, guest))
    store.store_page("shop", Kind.ORDER, orders, _held, 2)
    store.save_profiles(
        {"p_anna": ["crm:9", "shop:1"], "p_bert": ["shop:2"], "p_co": ["shop:3"], "p_co2": ["crm:8"]},
        [VerdictChunk.of([(p, Membership(frozenset(), None), "{}") for p in ("p_anna", "p_bert", "p_co", "p_co2")])],
        {},
        2,
        [],
    )
    erased = store.erasures.erase(["p_anna"], NOW, {"shop": TAGGED}, _facts_or_fail)
    assert erased.unread == (("shop", "contact", "u1"), ("shop", "contact", "u3"), ("shop", "order", "g2"))
    assert erased.quarantined == {"shop": 1}  # u9, hers by the link on her CRM record
    with store.db.reading() as conn:
        kept = {tuple(r) for r in conn.execute(text("SELECT system, kind, record_id FROM quarantine")).all()}
    assert {("shop", "contact", "u1"), ("shop", "contact", "u3"), ("shop", "order", "g2")} <= kept
    assert ("shop", "contact", "u9") not in kept
    # Without the field maps (no way to read held records), nothing is named either.
    assert store.erasures.erase(["p_bert"], NOW, {}, None).unread == ()


def test_held_records_that_name_no_one_but_hold_her_mobile_number_are_named(store: StateStore) -> None:
    """Her mobile number in a value of a held record its field map reads no one in, in a spelling
    of its own (after a line break, national in her number's own country, in another script's
    digits), names the record as her address does; someone else's number, a number she shares with
    another person's record or with more held records than identity resolution joins by, or a
    number of hers only as digits inside something else do not."""
    anna = Contact("crm", "9", NOW, email="anna@x.nl", phone="+31612345678", phone_kind="mobile", given_name="Anna")
    bert = Contact("shop", "2", NOW, email="bert@x.nl", phone="+31687654321", phone_kind="mobile")
    theirs = [
        Contact("crm", "6", NOW, email="anna@x.be", phone="+32470123456", phone_kind="mobile"),  # Belgian
        Contact("crm", "5", NOW, email="anna.old@x.nl", phone="+31622222222", phone_kind="mobile"),
        Contact("crm", "7", NOW, email="anna.work@x.nl", phone="+31611111111", phone_kind="mobile"),
        Contact("shop", "4", NOW, email="carl@x.nl", phone="+31611111111", phone_kind="mobile"),  # Carl's too
    ]
    for contact in (anna, bert, *theirs):
        record = SourceRecord(contact.system, Kind.CONTACT, contact.id, NOW, {"email": contact.email})
        store.store_page(contact.system, Kind.CONTACT, [record], lambda _, c=contact: c, 1)
    held = [
        SourceRecord("shop", Kind.CONTACT, "u1", NOW, {"bad": True, "note": "bel Anna: 06-12 34 56 78"}),
        SourceRecord("shop", Kind.CONTACT, "u2", NOW, {"bad": True, "note": "+31 6 87654321"}),  # Bert's
        SourceRecord("shop", Kind.CONTACT, "u3", NOW, {"bad": True, "odd": True, "raw": "0031 (0)6 1234 5678"}),
        SourceRecord("shop", Kind.CONTACT, "u4", NOW, {"bad": True, "note": "06 11111111"}),  # Carl's too
        SourceRecord("shop", Kind.CONTACT, "u5", NOW, {"bad": True, "iban": "NL91ABNA0417164300612345678"}),
        SourceRecord("shop", Kind.CONTACT, "u6", NOW, {"bad": True, "note": "Terugbellen:\n06-12 34 56 78"}),
        SourceRecord("shop", Kind.CONTACT, "u7", NOW, {"bad": True, "lines": ["Groet,\nanna@x.nl"]}),
        SourceRecord("shop", Kind.CONTACT, "u8", NOW, {"bad": True, "note": "GSM 0470 12 34 56"}),
        SourceRecord("shop", Kind.CONTACT, "u9", NOW, {"bad": True, "note": "06 22222222"}),  # shared by the held
        # In full-width digits (as an East Asian keyboard types them), which the matcher reads.
        SourceRecord(
            "shop",
            Kind.CONTACT,
            "uw",
            NOW,
            {"bad": True, "note": "bel \uff10\uff16-\uff11\uff12 \uff13\uff14 \uff15\uff16 \uff17\uff18"},
        ),
    ]
    # Four held contacts of one system under her old number: more than identity resolution joins
    # by (3), so it is a shared one, and none of them is hers by it.
    old_number = {"bad": True, "mobile": "+31622222222"}
    held += [SourceRecord("shop", Kind.CONTACT, f"h{n}", NOW, old_number) for n in range(4)]
    store.store_page("shop", Kind.CONTACT, held, _held, 2)
    guest = SourceRecord("shop", Kind.ORDER, "g1", NOW, {"customer": None, "email": None, "bad": True})
    guest.payload["delivery"] = {"phone": 31612345678}
    store.store_page("shop", Kind.ORDER, [guest], _held, 2)
    members = {"p_anna": ["crm:5", "crm:6", "crm:7", "crm:9"], "p_bert": ["shop:2"], "p_carl": ["shop:4"]}
    verdicts = [VerdictChunk.of([(p, Membership(frozenset(), None), "{}") for p in sorted(members)])]
    store.save_profiles(members, verdicts, {}, 2, [])
    erased = store.erasures.erase(["p_anna"], NOW, {}, _facts_or_fail)
    named = ("u1", "u3", "u6", "u7", "u8", "uw")
    assert erased.unread == (*(("shop", "contact", rid) for rid in named), ("shop", "order", "g1"))
    assert erased.quarantined == {}


def test_held_records_under_a_shared_address_stay(store: StateStore) -> None:
    """An address on more records of one system than identity resolution joins by, held ones
    counted, is a shared one (a family's, a company's): no held record is hers by it, nor are the
    orders naming those records."""
    store.store_page("crm", Kind.CONTACT, _contacts("crm", ("9", "fam@x.nl")), _map, 1)
    verdicts = [VerdictChunk.of([("p_anna", Membership(frozenset(), None), "{}")])]
    store.save_profiles({"p_anna": ["crm:9"]}, verdicts, {}, 1, [])
    family = [SourceRecord("shop", Kind.CONTACT, f"c{i}", NOW, {"email": "fam@x.nl", "bad": True}) for i in range(4)]
    store.store_page("shop", Kind.CONTACT, family, _held, 1)
    store.store_page("shop", Kind.ORDER, _orders("shop", *((f"o{i}", f"c{i}", None) for i in range(4))), _map, 1)
    erased = store.erasures.erase(["p_anna"], NOW, {"shop": TAGGED}, _facts, SharedAbove(email=3))
    assert erased.quarantined == {} and erased.orders == {}
    assert store.erasures.targets("shop") == []
    assert store.store_page("shop", Kind.ORDER, _orders("shop", ("o9", "c2", None)), _map, 2).changed == 1
    with store.db.reading() as conn:
        assert conn.execute(text("SELECT COUNT(*) FROM quarantine")).scalar() == 4


def test_held_records_without_an_id_of_their_own_go_without_a_vendor_target_or_a_block_on_others(
    store: StateStore,
) -> None:
    """A record held for having no id, or for an id too long to keep (stored under a stand-in), is
    erased with her other data, but no write may address it at the vendor, and the empty key is
    never hashed: a later record of someone else without an id is still stored (held)."""
    _populate(store)
    nameless = [
        SourceRecord("shop", Kind.CONTACT, "", NOW, {"email": "anna@x.nl", "bad": True}),
        SourceRecord("shop", Kind.CONTACT, "7" * 300, NOW, {"email": "anna@x.nl", "bad": True}),
    ]
    store.store_page("shop", Kind.CONTACT, nameless, _held, 1)
    erased = store.erasures.erase(["p_anna"], NOW, {"shop": TAGGED}, _facts)
    assert erased.quarantined == {"shop": 2}
    assert [t.record_id for t in store.erasures.targets("shop")] == ["1"]
    with store.db.reading() as conn:
        assert conn.execute(text("SELECT COUNT(*) FROM quarantine")).scalar() == 0
    zoe = SourceRecord("shop", Kind.CONTACT, "", NOW, {"email": "zoe@x.nl", "bad": True})
    assert store.store_page("shop", Kind.CONTACT, [zoe], _held, 2).changed == 1
    assert store.store_page("shop", Kind.CONTACT, nameless[1:], _held, 2).changed == 0  # hers stays out


def test_held_contacts_with_her_mobile_number_go_unless_the_number_is_shared_or_the_name_disagrees(
    store: StateStore,
) -> None:
    """Identity resolution joins records by a mobile number too (never across given names that
    disagree, never by a number on more records of one system than the limit, and on a number
    whose names disagree, a family's, no record without a name): so does forget, for held
    contacts that carry her number and no email of hers."""
    mine, family, quiet, theirs = "+31612345678", "+31687654321", "+31611112222", "+31622223333"

    def mapped(record: SourceRecord) -> Contact:
        p = record.payload
        return Contact(
            record.system,
            record.id,
            NOW,
            email=p["email"],
            phone=p["mobile"],
            phone_kind="mobile",
            given_name=p["name"],
        )

    people = [
        SourceRecord("crm", Kind.CONTACT, "9", NOW, {"email": "anna@x.nl", "mobile": mine, "name": "Anna"}),
        SourceRecord("crm", Kind.CONTACT, "7", NOW, {"email": "anna2@x.nl", "mobile": family, "name": "Anna"}),
        SourceRecord("crm", Kind.CONTACT, "8", NOW, {"email": "anna3@x.nl", "mobile": quiet, "name": "Anna"}),
        SourceRecord("crm", Kind.CONTACT, "6", NOW, {"email": "anna4@x.nl", "mobile": theirs, "name": "Anna"}),
    ]
    store.store_page("crm", Kind.CONTACT, people, mapped, 1)
    verdicts = [VerdictChunk.of([("p_anna", Membership(frozenset(), None), "{}")])]
    store.save_profiles({"p_anna": ["crm:6", "crm:7", "crm:8", "crm:9"]}, verdicts, {}, 1, [])

    def held(rid: str, mobile: str, name: str | None) -> SourceRecord:
        return SourceRecord("shop", Kind.CONTACT, rid, NOW, {"mobile": mobile, "name": name, "bad": True})

    records = [
        held("h1", mine, "A."),  # her number, her initial, which is not Bert's: hers
        held("h2", mine, None),  # her number, no name, but Bert's number too: whose, it cannot say
        held("h3", mine, "Bert"),  # her number, another given name: her son's phone, not hers
        held("q1", quiet, None),  # a number no other name is on, no readable name: hers
        held("q2", quiet, ". "),  # the same, a name of dots alone
        held("t1", theirs, "A."),  # Anna's initial, and Arthur's: the evidence points two ways
        held("t2", theirs, "Arthur"),
        *(held(f"f{i}", family, "Anna") for i in range(4)),  # a number on four shop records: shared
    ]
    store.store_page("shop", Kind.CONTACT, records, _held, 1)
    store.store_page("shop", Kind.ORDER, _orders("shop", ("o1", "h1", None), ("o2", "h3", None)), _map, 1)
    erased = store.erasures.erase(["p_anna"], NOW, {"shop": TAGGED}, _facts, SharedAbove(email=3, mobile=3))
    assert erased.quarantined == {"shop": 3}
    assert erased.orders == {"shop": 1}  # o1 names h1
    with store.db.reading() as conn:
        kept = sorted(r for (r,) in conn.execute(text("SELECT record_id FROM quarantine")).all())
    assert kept == ["f0", "f1", "f2", "f3", "h2", "h3", "t1", "t2"]
    assert store.consistency_problems() == []


def test_forget_reads_a_held_payload_as_the_mapping_reads_a_contact() -> None:
    """`sync.forget.payload_facts` through a vendor's own field maps (AFAS's): the number
    normalised to E.164 as `map_contact` would, a landline named no mobile, the given name parsed,
    an order's customer id."""
    from types import SimpleNamespace

    from connectors.afas.client import AfasConnector
    from mapping.fieldmaps import MappingRules
    from mapping.model import FieldSpec
    from sync.forget import payload_facts

    fields = {**AfasConnector.contact_fields, "link:shop": FieldSpec("ShopId", "id")}  # a configured link
    afas = SimpleNamespace(contact_fieldmap=fields, order_fields=AfasConnector.order_fields)
    shop = SimpleNamespace(canonical_id=lambda raw: f"gid://shopify/Customer/{raw}" if raw.isdigit() else None)
    facts = payload_facts({"afas": afas, "shop": shop}, MappingRules(default_country="NL"))  # type: ignore[dict-item]
    person = {"Email": " Anna@X.nl ", "Mobile": "06 1234 5678", "FirstName": "anna", "LastName": "de Boer"}
    assert facts("afas", Kind.CONTACT.value, person) == HeldFacts(None, "anna@x.nl", "+31612345678", "Anna")
    # Held for a first name no name is that long: no given name, which never disagrees with hers.
    held = facts("afas", Kind.CONTACT.value, {**person, "FirstName": "A" * 1200})
    assert held == HeldFacts(None, "anna@x.nl", "+31612345678", None)
    assert facts("afas", Kind.CONTACT.value, {"Mobile": "020 123 4567"}).mobile is None  # a landline
    linking = facts("afas", Kind.CONTACT.value, {**person, "ShopId": 77})
    assert linking.links == ("shop:gid://shopify/Customer/77",)  # as map_contact keys the link
    assert facts("afas", Kind.CONTACT.value, {**person, "ShopId": "x"}).links == ()  # no id of the shop's
    assert facts("afas", Kind.ORDER.value, {"PersonId": 40001, "AmountInclVat": "x"}) == HeldFacts("40001")
    assert facts("other", Kind.CONTACT.value, person) == HeldFacts()


def test_held_contacts_linked_to_or_from_her_records_go(store: StateStore) -> None:
    """A record's own id stored in another system (`link:` fields) is what identity resolution joins
    by first: a held contact that names one of her records, or that one of her records names, is
    hers; one that names someone else's record is not."""
    _anna_and_bert(store, {"email": "anna@x.nl", "links": ["shop:named"]})
    held = [
        SourceRecord("shop", Kind.CONTACT, "names-her", NOW, {"links": ["crm:9"], "bad": True}),
        SourceRecord("shop", Kind.CONTACT, "named", NOW, {"bad": True}),  # her crm record names it
        SourceRecord("shop", Kind.CONTACT, "names-bert", NOW, {"links": ["crm:8"], "bad": True}),
    ]
    store.store_page("shop", Kind.CONTACT, held, _held, 1)
    erased = store.erasures.erase(["p_anna"], NOW, {"shop": TAGGED}, _facts)
    assert erased.quarantined == {"shop": 2}
    with store.db.reading() as conn:
        assert conn.execute(text("SELECT record_id FROM quarantine")).all() == [("names-bert",)]
    assert store.consistency_problems() == []


def test_an_address_only_a_held_record_of_hers_shows_takes_her_guest_orders_and_other_held_records_too(
    store: StateStore,
) -> None:
    """A held contact found by her mobile number brings an address of its own: her guest orders
    under it, mapped or held, and another held contact under it are hers too. A held contact with
    her number but an address on Bert's record is left: the evidence points two ways."""
    mine = "+31612345678"
    _anna_and_bert(store, {"email": "anna@x.nl", "mobile": mine})
    private = "anna.private@y.nl"
    held = [
        SourceRecord("shop", Kind.CONTACT, "h1", NOW, {"mobile": mine, "email": private, "bad": True}),
        SourceRecord("shop", Kind.CONTACT, "h2", NOW, {"email": private, "bad": True}),  # by h1's address
        SourceRecord("shop", Kind.CONTACT, "h3", NOW, {"mobile": mine, "email": "bert@x.nl", "bad": True}),
    ]
    store.store_page("shop", Kind.CONTACT, held, _held, 1)
    store.store_page("shop", Kind.ORDER, _orders("shop", ("g1", None, private)), _map, 1)  # a guest order
    held_orders = [SourceRecord("shop", Kind.ORDER, "g2", NOW, {"customer": None, "email": private, "bad": True})]
    store.store_page("shop", Kind.ORDER, held_orders, _held, 1)
    erased = store.erasures.erase(["p_anna"], NOW, {"shop": TAGGED}, _facts)
    assert erased.quarantined == {"shop": 3}  # h1, h2, g2
    assert erased.orders == {"shop": 1}  # g1
    with store.db.reading() as conn:
        assert conn.execute(text("SELECT record_id FROM quarantine")).all() == [("h3",)]
        payloads = " ".join(str(p) for (p,) in conn.execute(text("SELECT payload FROM raw_records")).all())
    assert private not in payloads
    assert store.consistency_problems() == []


def test_a_held_record_named_by_its_id_goes_with_its_orders_ledger_and_an_address_of_its_own_alone(
    store: StateStore,
) -> None:
    """`forget <system>:<id>` naming a held contact no profile holds: its payload and quarantine
    entry, the orders naming it (mapped and held), its ledger row (a vendor target for the tag
    crmsync wrote there), and, under its address that no stored contact holds, the guest orders and
    another held contact. A held contact under a profile's address is named alone: that address
    stays the profile's. An id nothing is held under erases nothing and writes nothing."""
    _populate(store)
    held = [
        SourceRecord("shop", Kind.CONTACT, "h1", NOW, {"email": "cees@y.nl", "bad": True, "name": "Cees Held"}),
        SourceRecord("crm", Kind.CONTACT, "h2", NOW, {"email": "cees@y.nl", "bad": True}),  # by h1's address
        SourceRecord("shop", Kind.CONTACT, "h3", NOW, {"email": "bert@x.nl", "bad": True}),  # a profile's address
    ]
    store.store_page("shop", Kind.CONTACT, [r for r in held if r.system == "shop"], _held, 2)
    store.store_page("crm", Kind.CONTACT, [r for r in held if r.system == "crm"], _held, 2)
    store.record_results(
        "shop", [WriteBack("shop", "h1", ("crmsync:friends",), (), {}, TAGGED)], [WriteResult("h1", True)], 1, NOW
    )
    store.store_page("shop", Kind.ORDER, _orders("shop", ("o7", "h1", None), ("o8", None, "cees@y.nl")), _map, 2)
    held_order = [SourceRecord("shop", Kind.ORDER, "q1", NOW, {"customer": "h1", "email": None, "bad": True})]
    store.store_page("shop", Kind.ORDER, held_order, _held, 2)
    before = _rows(store)
    with pytest.raises(NothingToErase):
        store.erasures.erase([], NOW, {}, _facts, record=("shop", ["h9", "gid-of-h9"]))
    assert _rows(store) == before  # not even the salt

    erased = store.erasures.erase([], NOW, {}, _facts, record=("shop", ["nope", "h1"]))
    assert erased.profiles == () and erased.contacts == {}
    assert erased.quarantined == {"shop": 2, "crm": 1}  # h1, q1; h2
    assert erased.orders == {"shop": 2}  # o7 names it, o8 is a guest order under its address
    (target,) = store.erasures.targets("shop")
    assert target.record_id == "h1" and target.known.tags == frozenset({"crmsync:friends"})
    rows = _rows(store)
    everything = repr({name: found for name, found in rows.items() if name != "erasure_targets"})
    assert "cees" not in everything.lower() and "'h1'" not in everything and "'o8'" not in everything
    with store.db.reading() as conn:
        assert conn.execute(text("SELECT record_id FROM quarantine")).all() == [("h3",)]
    assert store.profiles_for(email_key="bert@x.nl") == ["p_bert"]
    # h3 alone, though its address is Bert's: his records and orders stay.
    erased = store.erasures.erase([], NOW, {}, _facts, record=("shop", ["h3"]))
    assert erased.quarantined == {"shop": 1} and erased.orders == {} and erased.targets == {}
    assert store.profiles_for(email_key="bert@x.nl") == ["p_bert"]
    assert any(row[:2] == ("shop", "o3") for row in _rows(store)["orders"])
    assert store.consistency_problems() == []


def _anna_and_bert(store: StateStore, anna: dict[str, Any]) -> None:
    """Anna (crm:9, from `anna`) and Bert (crm:8, bert@x.nl) as mapped CRM contacts, each in a
    profile of their own. A payload's email, mobile number and links become the contact's."""

    def mapped(record: SourceRecord) -> Contact:
        p = record.payload
        mobile = p.get("mobile")
        return Contact(
            record.system,
            record.id,
            NOW,
            email=p["email"],
            phone=mobile,
            phone_kind="mobile" if mobile else None,
            links=tuple(p.get("links", ())),
        )

    people = [
        SourceRecord("crm", Kind.CONTACT, "9", NOW, anna),
        SourceRecord("crm", Kind.CONTACT, "8", NOW, {"email": "bert@x.nl"}),
    ]
    store.store_page("crm", Kind.CONTACT, people, mapped, 1)
    verdicts = [
        VerdictChunk.of(
            [("p_anna", Membership(frozenset(), None), "{}"), ("p_bert", Membership(frozenset(), None), "{}")]
        )
    ]
    store.save_profiles({"p_anna": ["crm:9"], "p_bert": ["crm:8"]}, verdicts, {}, 1, [])


def test_forget_says_which_held_records_it_kept_with_their_address_and_what_to_do() -> None:
    """The person's words for an erasure that left held records holding their address: which
    ones (system, kind, vendor id) and what the operator does about them; none when none."""
    from sync.forget import render

    document: dict[str, Any] = {
        "profiles": ["p_anna"],
        "records": {"contacts": {"shop": 1}, "orders": {}, "quarantined": {}},
        "systems": {},
        "pending": [],
        "unread": [{"system": "shop", "kind": "contact", "id": "u1"}, {"system": "crm", "kind": "order", "id": "g2"}],
    }
    text_out = render(document)
    assert "Kept: 2 quarantined records whose text holds their email address or mobile number" in text_out
    assert "  shop contact u1\n  crm order g2\n" in text_out
    assert "`crmsync forget` the person again" in text_out
    assert "Kept" not in render({**document, "unread": []})


def test_a_retired_id_given_to_a_person_again_is_not_erased_with_the_profile_it_was_merged_into(
    store: StateStore,
) -> None:
    """Bert was merged into Anna once (alias p_bert -> p_anna, never removed) and came apart again
    under his own id, which a new profile is given again: forgetting Anna takes her retired ids'
    history, not Bert's live profile, history or tier."""
    _populate(store)
    with store.db.writing() as conn:
        conn.exec_driver_sql("INSERT INTO profile_aliases (alias, profile_id, seq) VALUES ('p_bert', 'p_anna', 1)")
        for pid in ("p_anna", "p_old", "p_bert"):
            conn.execute(segment_history.insert().values(profile_id=pid, segment="x", entered_seq=1, entered_at="now"))
        conn.exec_driver_sql(
            "INSERT INTO profile_tiers (profile_id, tier, qualified_at, since_seq) VALUES ('p_bert', 'gold', '', 1)"
        )
    store.erasures.erase(["p_anna"], NOW)
    rows = _rows(store)
    assert [r[0] for r in rows["profiles"]] == ["p_bert", "p_co", "p_co2"]
    assert [r[0] for r in rows["segment_history"]] == ["p_bert"]
    assert [r[0] for r in rows["profile_tiers"]] == ["p_bert"]


def test_a_record_named_by_its_id_that_only_orders_name_takes_its_held_orders_too(store: StateStore) -> None:
    """`forget <system>:<id>` naming a customer record whose own record the state does not hold
    (deleted at the vendor, say) but whose orders it does: the orders naming it go, the held
    (quarantined) ones as much as the mapped ones; a held order's payload is the person's data."""
    _populate(store)
    store.store_page("shop", Kind.ORDER, _orders("shop", ("o7", "h1", None)), _map, 2)
    held_order = [SourceRecord("shop", Kind.ORDER, "q1", NOW, {"customer": "h1", "email": "cees@y.nl", "bad": True})]
    store.store_page("shop", Kind.ORDER, held_order, _held, 2)

    erased = store.erasures.erase([], NOW, {}, _facts, record=("shop", ["h1"]))
    assert erased.orders == {"shop": 1} and erased.quarantined == {"shop": 1}  # o7; q1
    rows = _rows(store)
    assert "cees" not in repr(rows).lower() and "'q1'" not in repr(rows)
    assert store.profiles_for(email_key="anna@x.nl") != []  # no one else's
    assert store.consistency_problems() == []


def test_a_record_named_by_its_id_that_only_held_orders_name_is_forgotten(store: StateStore) -> None:
    """The same where only a held order names the record: that is something the state holds of
    it (not "nothing matches"), and it goes, with the customer id kept only as a hash."""
    _populate(store)
    held_order = [SourceRecord("shop", Kind.ORDER, "q1", NOW, {"customer": "h1", "email": "cees@y.nl", "bad": True})]
    store.store_page("shop", Kind.ORDER, held_order, _held, 2)
    before = _rows(store)
    with pytest.raises(NothingToErase):  # another customer, of whom nothing is held
        store.erasures.erase([], NOW, {}, _facts, record=("shop", ["h2"]))
    assert _rows(store) == before

    erased = store.erasures.erase([], NOW, {}, _facts, record=("shop", ["h1"]))
    assert erased.quarantined == {"shop": 1} and erased.orders == {}
    rows = _rows(store)
    assert "cees" not in repr(rows).lower() and "'q1'" not in repr(rows) and "'h1'" not in repr(rows)
    assert store.consistency_problems() == []
