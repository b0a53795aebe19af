"""`crmsync forget KEY` against the sandboxes (CONTRACTS §6, issue 18): afterwards `explain` finds
nothing, no sandbox holds a crmsync tag or field for the person, nobody else's record changed, the
state holds no trace of them but salted hashes, and neither the next sync nor a backfill brings
them back. A system that refuses the erasure keeps it pending (`status` lists it) until a later
sync clears it."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import requests

from connectors.registry import vendor
from tests.chaos.lab import sandbox_state
from tests.kit import Sandboxes, json_out, run_crmsync


def crmsync_marks(value: Any, key: str = "") -> Iterator[str]:
    """crmsync's tags and fields in a sandbox's customer document: any text naming crmsync (a tag
    `crmsync:…`, a metafield namespace, an efficy category), and any field named after crmsync
    that holds a value."""
    if isinstance(value, dict):
        if "value" in value and any("crmsync" in str(v).lower() for k, v in value.items() if k != "value"):
            # A row of fields ({key, value}, a metafield): crmsync's while it holds a value. (WooCommerce's
            # REST API cannot delete a meta row, only empty it: an empty one holds nothing of the person.)
            if value["value"] not in (None, ""):
                yield f"{value}"
            return
        for name, inner in value.items():
            if "crmsync" in name.lower() and inner not in (None, "", [], {}):
                yield f"{name}={inner!r}"
            elif "crmsync" not in name.lower():
                yield from crmsync_marks(inner, name)
    elif isinstance(value, list):
        for item in value:
            yield from crmsync_marks(item, key)
    elif isinstance(value, str) and "crmsync" in value.lower():
        yield f"{key}: {value}"


def most_spread_profile(state: Path, having: str) -> str:
    """The profile whose records span the most systems, among those with a record in `having`."""
    with closing(sqlite3.connect(state)) as db:
        row = db.execute(
            "SELECT profile_id FROM profile_members GROUP BY profile_id "
            "HAVING sum(system = ?) > 0 ORDER BY count(DISTINCT system) DESC, profile_id LIMIT 1",
            (having,),
        ).fetchone()
    assert row is not None
    return str(row[0])


def records_of(config: Path, profile_id: str) -> tuple[list[tuple[str, str]], str]:
    doc = json_out(run_crmsync("explain", profile_id, "-c", str(config), "--json"))
    return [(r["system"], r["id"]) for r in doc["records"]], str(doc["fields"]["email"]["value"])


def state_text(state: Path) -> str:
    with closing(sqlite3.connect(state)) as db:
        tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        return "\n".join(repr(db.execute(f"SELECT * FROM {t}").fetchall()) for t in tables).lower()


def test_forget_erases_the_person_everywhere_and_they_stay_forgotten(
    sandboxes: Sandboxes, small_data: dict[str, Any], tmp_path: Path
) -> None:
    config = sandboxes.config(tmp_path)
    state = tmp_path / "crmsync.db"
    assert run_crmsync("sync", "-c", str(config)).returncode == 0
    profile = most_spread_profile(state, "shopify")
    records, email = records_of(config, profile)
    assert len({system for system, _ in records}) >= 2
    marked = {f"{s}:{r}": list(crmsync_marks(sandboxes.customer(s, r))) for s, r in records}
    assert any(marked.values()), marked  # there is something to erase
    # One of their records is then held (a first name longer than any name): no profile holds it,
    # and it is theirs all the same.
    held = next((s, r) for s, r in records if s != "shopify")
    sandboxes.patch_customer(held[0], held[1], vendor(held[0]).emulated.rename("A" * 1200))
    assert run_crmsync("sync", "-c", str(config)).returncode == 0
    found = json_out(run_crmsync("explain", email, "-c", str(config), "--json"))
    profile = str(found["profile_id"])
    assert held not in [(r["system"], r["id"]) for r in found["records"]]
    with closing(sqlite3.connect(state)) as db:
        assert db.execute("SELECT reason FROM quarantine WHERE record_id = ?", (held[1],)).fetchall() == [("too_long",)]
    before = sandbox_state(sandboxes, small_data)

    forgotten = run_crmsync("forget", email.upper(), "-c", str(config), "--json")
    assert forgotten.returncode == 0, forgotten.stderr[-3000:]
    doc = json_out(forgotten)
    assert doc["ok"] is True and doc["profiles"] == [profile] and doc["pending"] == []
    assert sum(doc["records"]["contacts"].values()) == len(records) - 1
    assert doc["records"]["quarantined"] == {held[0]: 1}
    assert doc["unread"] == []  # no held record kept that holds their address
    assert email.lower() not in forgotten.stdout.lower() and email.lower() not in forgotten.stderr.lower()
    for system, rid in records:
        assert list(crmsync_marks(sandboxes.customer(system, rid))) == [], (system, rid)
    after = sandbox_state(sandboxes, small_data)
    theirs = {f"{s}:{r}" for s, r in records}
    changed = {key for key in before if before[key] != after[key]}
    assert changed <= theirs and changed, changed  # theirs changed, nobody else's

    for key in (email, profile, f"{records[0][0]}:{records[0][1]}"):
        assert run_crmsync("explain", key, "-c", str(config)).returncode == 4, key
    assert email.lower() not in state_text(state)
    assert profile not in state_text(state)

    # Neither the next sync (their records changed at the vendors, so they are read again) nor a
    # backfill (everything read again) brings them back or writes to them.
    sandboxes.reset_stats()
    for command in ("sync", "backfill"):
        again = run_crmsync(command, "-c", str(config), "--json")
        assert again.returncode == 0, again.stderr[-3000:]
        assert run_crmsync("explain", email, "-c", str(config)).returncode == 4
        assert email.lower() not in state_text(state)
        for system, rid in records:
            assert list(crmsync_marks(sandboxes.customer(system, rid))) == [], (command, system, rid)
    assert sandbox_state(sandboxes, small_data) == after
    status = json_out(run_crmsync("status", "-c", str(config), "--json"))
    assert status["erasures"] == []


def test_an_erasure_a_system_refuses_stays_pending_until_a_sync_clears_it(sandboxes: Sandboxes, tmp_path: Path) -> None:
    config = sandboxes.config(tmp_path)
    state = tmp_path / "crmsync.db"
    assert run_crmsync("sync", "-c", str(config)).returncode == 0
    profile = most_spread_profile(state, "woocommerce")
    records, _ = records_of(config, profile)
    woo = next(rid for system, rid in records if system == "woocommerce")
    assert list(crmsync_marks(sandboxes.customer("woocommerce", woo)))
    sandboxes.fault("woocommerce", match="writes", fault="503", times=1000)

    refused = run_crmsync("forget", profile, "-c", str(config), "--json")
    assert refused.returncode == 3, refused.stderr[-3000:]
    doc = json_out(refused)
    assert doc["ok"] is False and doc["pending"] == ["woocommerce"]
    assert doc["systems"]["woocommerce"]["pending"] == 1 and doc["systems"]["woocommerce"]["error"]
    assert all(outcome["pending"] == 0 for name, outcome in doc["systems"].items() if name != "woocommerce")
    assert list(crmsync_marks(sandboxes.customer("woocommerce", woo)))  # still there: the shop refused
    assert run_crmsync("explain", profile, "-c", str(config)).returncode == 4  # gone from the state already

    status = run_crmsync("status", "-c", str(config), "--json")
    (pending,) = json_out(status)["erasures"]
    assert pending["erasure"] == doc["erasure"] and set(pending["waiting_for"]) == {"woocommerce"}
    assert pending["waiting_for"]["woocommerce"]["attempts"] == 1
    people = run_crmsync("status", "-c", str(config))
    assert f"erasure {doc['erasure']}" in people.stdout and "pending at woocommerce" in people.stdout

    requests.delete(f"{sandboxes.url('woocommerce')}/_sandbox/faults", timeout=5).raise_for_status()
    synced = run_crmsync("sync", "-c", str(config), "--json")
    assert synced.returncode == 0, synced.stderr[-3000:]
    assert list(crmsync_marks(sandboxes.customer("woocommerce", woo))) == []
    assert json_out(run_crmsync("status", "-c", str(config), "--json"))["erasures"] == []
    with closing(sqlite3.connect(state)) as db:
        assert db.execute("SELECT count(*) FROM erasure_targets").fetchone() == (0,)
        assert db.execute("SELECT completed_at IS NOT NULL FROM erasures").fetchall() == [(1,)]
    # Done: nothing left to give up on; and a KEY with --abandon is a usage error.
    assert run_crmsync("forget", "--abandon", doc["erasure"], "-c", str(config)).returncode == 4
    assert run_crmsync("forget", profile, "--abandon", doc["erasure"], "-c", str(config)).returncode == 2


def test_forget_after_a_tag_prefix_change_leaves_the_old_prefix_tags(
    sandboxes: Sandboxes, small_data: dict[str, Any], tmp_path: Path
) -> None:
    """Tags under an earlier prefix are no longer crmsync's (README: What crmsync writes): an
    erasure removes those of the current prefix, as every plan does, on every record alike."""
    config = sandboxes.config(tmp_path)
    assert run_crmsync("sync", "-c", str(config)).returncode == 0
    profile = most_spread_profile(tmp_path / "crmsync.db", "shopify")
    records, email = records_of(config, profile)
    shop = next(rid for system, rid in records if system == "shopify")
    old = {t for t in sandboxes.customer("shopify", shop)["tags"] if t.startswith("crmsync:")}
    assert old
    # Forgotten right after the change: what crmsync knows of the record is still its last push,
    # the old prefix's tags (the read before it is older).
    config.write_text(config.read_text().replace('tag_prefix = "crmsync:"', 'tag_prefix = "seg:"'))
    forgotten = run_crmsync("forget", email, "-c", str(config), "--json")
    assert forgotten.returncode == 0, forgotten.stderr[-3000:]
    assert json_out(forgotten)["pending"] == []
    tags = set(sandboxes.customer("shopify", shop)["tags"])
    assert {t for t in tags if t.startswith("crmsync:")} == old


def test_a_system_crmsync_never_writes_to_leaves_no_pending_erasure(sandboxes: Sandboxes, tmp_path: Path) -> None:
    """A system read but never written (`writeback = false` from the start) holds nothing of
    crmsync's: an erasure has nothing to clear there, so it completes (README: "in every writable
    system") instead of waiting there for good, exit 3 and `status` listing it until abandoned."""
    config = sandboxes.config(tmp_path, woocommerce="writeback = false")
    state = tmp_path / "crmsync.db"
    assert run_crmsync("sync", "-c", str(config)).returncode == 0
    with closing(sqlite3.connect(state)) as db:
        row = db.execute(
            "SELECT profile_id FROM profile_members GROUP BY profile_id "
            "HAVING sum(system = 'woocommerce') > 0 AND count(DISTINCT system) > 1 LIMIT 1"
        ).fetchone()
        assert db.execute("SELECT count(*) FROM pushed WHERE system = 'woocommerce'").fetchone() == (0,)
    assert row is not None
    records, _ = records_of(config, str(row[0]))
    woo = next(rid for system, rid in records if system == "woocommerce")
    assert list(crmsync_marks(sandboxes.customer("woocommerce", woo))) == []  # nothing of crmsync's there

    forgotten = run_crmsync("forget", str(row[0]), "-c", str(config), "--json")
    assert forgotten.returncode == 0, forgotten.stdout + forgotten.stderr[-3000:]
    doc = json_out(forgotten)
    assert doc["ok"] is True and doc["pending"] == [] and "woocommerce" not in doc["systems"]
    assert json_out(run_crmsync("status", "-c", str(config), "--json"))["erasures"] == []
    with closing(sqlite3.connect(state)) as db:
        assert db.execute("SELECT count(*) FROM erasure_targets").fetchone() == (0,)
        assert db.execute("SELECT completed_at IS NOT NULL FROM erasures").fetchall() == [(1,)]


def test_forget_answers_for_its_own_erasure_not_for_one_still_pending_elsewhere(
    sandboxes: Sandboxes, tmp_path: Path
) -> None:
    """An earlier erasure still pending at a shop that refuses is tried again by the next forget,
    but it is not this one: a person with no record there is forgotten completely (exit 0), and the
    document names no system, record or error of the other person's erasure."""
    config = sandboxes.config(tmp_path)
    state = tmp_path / "crmsync.db"
    assert run_crmsync("sync", "-c", str(config)).returncode == 0
    first = most_spread_profile(state, "woocommerce")
    with closing(sqlite3.connect(state)) as db:
        row = db.execute(
            "SELECT profile_id FROM profile_members GROUP BY profile_id "
            "HAVING sum(system = 'woocommerce') = 0 AND sum(system = 'shopify') > 0 LIMIT 1"
        ).fetchone()
    assert row is not None
    second = str(row[0])
    sandboxes.fault("woocommerce", match="writes", fault="503", times=1000)
    earlier = run_crmsync("forget", first, "-c", str(config), "--json")
    assert earlier.returncode == 3, earlier.stderr[-3000:]
    pending = json_out(earlier)
    assert pending["pending"] == ["woocommerce"]

    forgotten = run_crmsync("forget", second, "-c", str(config), "--json")
    assert forgotten.returncode == 0, forgotten.stdout + forgotten.stderr[-3000:]
    doc = json_out(forgotten)
    assert doc["ok"] is True and doc["pending"] == [] and "woocommerce" not in doc["systems"], doc
    assert all(outcome["pending"] == 0 and outcome["error"] is None for outcome in doc["systems"].values())
    assert sum(outcome["cleared"] for outcome in doc["systems"].values()) >= 1
    # The earlier one is still pending, and `status` says so (it was tried again: two attempts).
    (waiting,) = json_out(run_crmsync("status", "-c", str(config), "--json"))["erasures"]
    assert waiting["erasure"] == pending["erasure"] and waiting["waiting_for"]["woocommerce"]["attempts"] == 2


def test_a_person_whose_only_record_is_held_is_forgotten_by_their_address(
    sandboxes: Sandboxes, small_data: dict[str, Any], tmp_path: Path
) -> None:
    """No profile holds a person whose one customer record is quarantined (a name longer than any
    name), yet the state holds their payload and their orders, and the shop still carries the tags
    crmsync wrote before it was held: `forget` by their address erases those as it erases a held
    record of a profiled person's, instead of answering that nothing matches (exit 4)."""
    config = sandboxes.config(tmp_path)
    state = tmp_path / "crmsync.db"
    assert run_crmsync("sync", "-c", str(config)).returncode == 0
    woo, email = lone_customer_with_orders(state, "woocommerce")
    assert list(crmsync_marks(sandboxes.customer("woocommerce", woo)))  # crmsync's segments are there
    sandboxes.patch_customer("woocommerce", woo, vendor("woocommerce").emulated.rename("A" * 1200))
    assert run_crmsync("sync", "-c", str(config)).returncode == 0
    assert run_crmsync("explain", email, "-c", str(config)).returncode == 4  # no profile holds them
    assert email.lower() in state_text(state)
    before = sandbox_state(sandboxes, small_data)

    forgotten = run_crmsync("forget", email, "-c", str(config), "--json")
    assert forgotten.returncode == 0, forgotten.stdout + forgotten.stderr[-3000:]
    doc = json_out(forgotten)
    assert doc["ok"] is True and doc["profiles"] == [] and doc["pending"] == []
    assert doc["records"]["quarantined"] == {"woocommerce": 1} and doc["records"]["orders"]["woocommerce"] >= 1
    assert email.lower() not in forgotten.stdout.lower() + forgotten.stderr.lower()
    assert list(crmsync_marks(sandboxes.customer("woocommerce", woo))) == []
    changed = {key for key, value in sandbox_state(sandboxes, small_data).items() if before[key] != value}
    assert changed == {f"woocommerce:{woo}"}
    assert email.lower() not in state_text(state)
    for command in ("sync", "backfill"):
        assert run_crmsync(command, "-c", str(config)).returncode == 0
        assert email.lower() not in state_text(state), command
    # Nothing of anyone's under an address no one holds: nothing to forget.
    assert run_crmsync("forget", email, "-c", str(config)).returncode == 4


def test_a_held_record_no_profile_holds_is_forgotten_by_its_system_and_id(
    sandboxes: Sandboxes, small_data: dict[str, Any], tmp_path: Path
) -> None:
    """`forget <system>:<id>` naming a customer record that is quarantined (so no profile holds it)
    erases what the state holds of it, as the address form does for a held record: its payload and
    quarantine entry, its orders, its ledger row, and the tags crmsync wrote at the shop before it
    was held; instead of answering that nothing matches (exit 4). The id as the shop's screens show
    it (the number of the gid) names it, as for `explain`."""
    config = sandboxes.config(tmp_path)
    state = tmp_path / "crmsync.db"
    assert run_crmsync("sync", "-c", str(config)).returncode == 0
    gid, email = lone_customer_with_orders(state, "shopify")
    number = gid.rsplit("/", 1)[1]
    assert list(crmsync_marks(sandboxes.customer("shopify", gid)))  # crmsync's tags are there
    sandboxes.patch_customer("shopify", gid, vendor("shopify").emulated.rename("A" * 1200))
    assert run_crmsync("sync", "-c", str(config)).returncode == 0
    with closing(sqlite3.connect(state)) as db:
        assert db.execute("SELECT reason FROM quarantine WHERE record_id = ?", (gid,)).fetchall() == [("too_long",)]
        assert db.execute("SELECT count(*) FROM pushed WHERE record_id = ?", (gid,)).fetchone() == (1,)
    assert run_crmsync("explain", f"shopify:{number}", "-c", str(config)).returncode == 4  # no profile holds it
    before = sandbox_state(sandboxes, small_data)

    forgotten = run_crmsync("forget", f"shopify:{number}", "-c", str(config), "--json")
    assert forgotten.returncode == 0, forgotten.stdout + forgotten.stderr[-3000:]
    doc = json_out(forgotten)
    assert doc["ok"] is True and doc["profiles"] == [] and doc["pending"] == []
    assert doc["records"]["quarantined"] == {"shopify": 1} and doc["records"]["orders"]["shopify"] >= 1
    assert doc["systems"] == {"shopify": {"cleared": 1, "pending": 0, "error": None}}
    assert email.lower() not in forgotten.stdout.lower() + forgotten.stderr.lower()
    assert list(crmsync_marks(sandboxes.customer("shopify", gid))) == []
    changed = {key for key, value in sandbox_state(sandboxes, small_data).items() if before[key] != value}
    assert changed == {f"shopify:{gid}"}
    text = state_text(state)
    assert email.lower() not in text and gid.lower() not in text
    for command in ("sync", "backfill"):
        assert run_crmsync(command, "-c", str(config)).returncode == 0
        assert gid.lower() not in state_text(state), command
    # Nothing held under it any more, nor under an id no record has: nothing to forget.
    for key in (f"shopify:{number}", f"shopify:{gid}", "shopify:1"):
        assert run_crmsync("forget", key, "-c", str(config)).returncode == 4, key


def _selected_interests(person: dict[str, Any]) -> set[str]:
    return {str(item["Name"]) for item in person.get("Interests") or [] if item.get("Selected")}


def test_forget_removes_a_prefixed_tag_added_by_hand_since_the_last_read_and_no_other_tag(
    sandboxes: Sandboxes, tmp_path: Path
) -> None:
    """A tag in crmsync's prefix put on the person's Shopify customer and SuperOffice person (as an
    Interest) after crmsync last read them, by hand or by another tool, is crmsync's (CONTRACTS
    §4): `forget` looks at the records before it writes and leaves none of crmsync's tags there,
    whatever their capitals, while the merchant's own tags and interests stay."""
    config = sandboxes.config(tmp_path, superoffice='segments_as = "interests"')
    # Interests instead of the segments field (they exclude each other).
    section = ""
    lines = []
    for line in config.read_text().splitlines():
        section = line.strip() if line.startswith("[") else section
        if not (section == "[systems.superoffice]" and line.startswith("segments_field")):
            lines.append(line)
    config.write_text("\n".join(lines) + "\n")
    state = tmp_path / "crmsync.db"
    assert run_crmsync("sync", "-c", str(config)).returncode == 0
    with closing(sqlite3.connect(state)) as db:
        row = db.execute(
            "SELECT profile_id FROM profile_members GROUP BY profile_id "
            "HAVING sum(system = 'shopify') > 0 AND sum(system = 'superoffice') > 0 LIMIT 1"
        ).fetchone()
    assert row is not None
    records, _ = records_of(config, str(row[0]))
    shop = next(rid for system, rid in records if system == "shopify")
    person = next(rid for system, rid in records if system == "superoffice")
    tags = list(sandboxes.customer("shopify", shop)["tags"])
    assert any(t.startswith("crmsync:") for t in tags)  # crmsync wrote some
    # By hand, after crmsync's last read: two of crmsync's prefix (one in other capitals), one not.
    sandboxes.patch_customer("shopify", shop, {"tags": [*tags, "crmsync:by-hand", "CRMSYNC:Shouting", "vip"]})
    hand = [{"Name": "crmsync:by-hand", "Selected": True}, {"Name": "golf", "Selected": True}]
    sandboxes.patch_customer("superoffice", person, {"Interests": hand})
    assert {"crmsync:by-hand", "golf"} <= _selected_interests(sandboxes.customer("superoffice", person))

    forgotten = run_crmsync("forget", str(row[0]), "-c", str(config), "--json")
    assert forgotten.returncode == 0, forgotten.stdout + forgotten.stderr[-3000:]
    assert json_out(forgotten)["pending"] == []
    left = sandboxes.customer("shopify", shop)["tags"]
    assert [t for t in left if t.casefold().startswith("crmsync:")] == [], left
    assert sorted(left) == sorted([t for t in tags if not t.startswith("crmsync:")] + ["vip"])
    interests = _selected_interests(sandboxes.customer("superoffice", person))
    assert [name for name in interests if name.casefold().startswith("crmsync:")] == [], interests
    assert "golf" in interests


def lone_customer_with_orders(state: Path, system: str) -> tuple[str, str]:
    """A customer record of `system` that is a profile of its own and has orders: its id and email."""
    with closing(sqlite3.connect(state)) as db:
        row = db.execute(
            "SELECT c.record_id, c.email FROM contacts c JOIN profile_members m USING (system, record_id) "
            "WHERE c.system = ? AND m.profile_id IN (SELECT profile_id FROM profile_members "
            "GROUP BY profile_id HAVING count(*) = 1) AND EXISTS (SELECT 1 FROM orders o WHERE "
            "o.system = c.system AND o.customer_id = c.record_id) LIMIT 1",
            (system,),
        ).fetchone()
    assert row is not None
    return str(row[0]), str(row[1])
