"""The state's tables, and opening a database with them at the schema version this code reads.

The schema is versioned by Alembic (sync/state/migrations: one revision per schema number, and
`SCHEMA_VERSION` is the head). A new state is made from these tables and stamped head; an older
one is upgraded by `crmsync migrate` or, under the writer lock, at the start of a writing command
(sync/migrate.py, sync/runtime.py). A change to a table here needs a new revision there.

What lives here, and why it is enough to resume after a crash at any point:
- raw_records: every vendor record as last read, with its content hash. An unchanged hash is
  skipped on arrival, so it costs nothing downstream.
- contacts / orders / quarantine: the mapped form of each raw record (or why it cannot be mapped),
  written in the same transaction as the raw record and the read checkpoint that covers it.
- checkpoints: where each system's read resumes.
- profiles, profile_members, identity_links, profile_aliases: the identity resolution (which
  identifier joined which records) and each profile's verdict.
- pushed: what each system last accepted from crmsync (the ledger), written per batch right
  after the vendor confirmed it. Writes are idempotent, so a batch repeated after a crash between
  the vendor's answer and this ledger changes nothing.
- pending: records a vendor rejected, retried every cycle until accepted.
- runs / system_runs: one row per cycle and per system, for `status`.
- segment_history: every entry of a profile into a segment and its exit, with run and time, so the
  report can say how stable a segment is and where people go when they leave.
- segment_runs: each segment's size and revenue at every (non-dry) run: sizes over time.
- profile_tiers: each profile's loyalty tier and the last time it qualified for it (hysteresis;
  "" for the `now` of the run that last recorded the tiers, kept in `meta.tiers_at`).
- resolution_snapshot: the last compute's resolution and order columns, with the inputs they were
  made from; a cycle whose inputs are the same reuses them (sync/resolution_snapshot.py). A cache:
  deleting it loses nothing.

Every change carries the sequence number of the run that made it; comparing a raw record's
`changed_seq` with the ledger's `pushed_seq` tells which of the two is the newer word on a record.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Connection,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    exists,
    insert,
    inspect,
    select,
    text,
)

from sync.state.sql import Database

# The head revision of sync/state/migrations (revision ids are these numbers); a unit test holds
# the two together. Kept in `meta.schema_version` as well, where crmsync before Alembic read it.
SCHEMA_VERSION = "13"

metadata = MetaData()
LINKING = text("links <> '[]'")  # the contacts `ix_contacts_linking` holds
EXITED = text("exited_seq IS NOT NULL")  # the segment history entries `ix_segment_history_exited` holds

raw_records = Table(
    "raw_records",
    metadata,
    Column("system", String(64), primary_key=True),
    Column("kind", String(16), primary_key=True),
    Column("record_id", String(255), primary_key=True),
    Column("content_hash", String(64), nullable=False),
    Column("payload", Text, nullable=False),
    Column("updated_at", String(40)),
    Column("changed_seq", Integer, nullable=False),
)

contacts = Table(
    "contacts",
    metadata,
    Column("system", String(64), primary_key=True),
    Column("record_id", String(255), primary_key=True),
    Column("email", String(320)),
    Column("email_key", String(320), index=True),
    Column("email_role", Boolean, nullable=False, default=False),
    Column("phone", String(64), index=True),
    # Any name the mapping keeps (text up to 1,000 characters): TEXT where the length is enforced
    # (PostgreSQL); SQLite ignores declared lengths, and its states keep the type they were made with.
    Column("given_name", String(255).with_variant(Text, "postgresql")),
    Column("phone_kind", String(16)),
    Column("details", Text, nullable=False, default="{}"),
    Column("updated_at", String(40)),
    Column("owned", Text, nullable=False),
    Column("links", Text, nullable=False, default="[]"),
    Column("changed_seq", Integer, nullable=False),
    # The few contacts that link to other systems' records: a cycle that resolves only the touched
    # components finds those linking to a changed contact through it, not by reading every row.
    Index("ix_contacts_linking", "system", "record_id", sqlite_where=LINKING, postgresql_where=LINKING),
    # What every compute reads first (`ComputeSnapshot.input_marks`: count, highest and sum of
    # changed_seq) and what a cycle by difference reads (the rows written since a run): from this
    # index, not a scan of every row (see `ix_orders_changed`).
    Index("ix_contacts_changed", "changed_seq"),
    # `updated_at` is what survivorship's "most recent" reads: a record stored again with only
    # crmsync's own tags or fields changed (`owned`) keeps it, though the vendor stamped the record
    # when crmsync wrote there. Else each write made its record the newest of its profile, and the
    # next cycle took that record's address or name (a region segment moving with no change of the
    # person's). The upsert keeps it where these columns are the same (sync/state/sql.py).
    info={
        "kept_while_same": (
            "updated_at",
            ("email", "email_role", "phone", "given_name", "phone_kind", "details", "links"),
        )
    },
)

orders = Table(
    "orders",
    metadata,
    Column("system", String(64), primary_key=True),
    Column("order_id", String(255), primary_key=True),
    Column("customer_id", String(255)),
    Column("email", String(320)),
    Column("email_key", String(320)),
    Column("amount", String(40), nullable=False),
    Column("currency", String(3), nullable=False),
    Column("created_at", String(40), nullable=False),
    Column("created_epoch", BigInteger, nullable=False),
    Column("counts", Boolean, nullable=False),
    Column("changed_seq", Integer, nullable=False),
    # The other bases (mapping/bases.py): whether a discount code was used (NULL: the system does
    # not say), the lines' product types or categories (a JSON list, NULL: none), and whether the
    # purchase was left unfinished (an abandoned checkout, a pending or failed order).
    Column("discount", Boolean),
    Column("categories", Text),
    Column("unfinished", Boolean, nullable=False, default=False),
    Index("ix_orders_customer", "system", "customer_id"),
    Index("ix_orders_changed", "changed_seq"),
)

quarantine = Table(
    "quarantine",
    metadata,
    Column("system", String(64), primary_key=True),
    Column("kind", String(16), primary_key=True),
    Column("record_id", String(255), primary_key=True),
    Column("reason", String(64), nullable=False),
    Column("message", Text, nullable=False),
    Column("content_hash", String(64), nullable=False),
    Column("since_seq", Integer, nullable=False),
)

checkpoints = Table(
    "checkpoints",
    metadata,
    Column("system", String(64), primary_key=True),
    Column("stream", String(64), primary_key=True),
    Column("value", Text, nullable=False),
    Column("seq", Integer, nullable=False),
)

profiles = Table(
    "profiles",
    metadata,
    Column("profile_id", String(64), primary_key=True),
    Column("created_seq", Integer, nullable=False),
    Column("segments", Text, nullable=False),
    Column("tier", String(64)),
    Column("traits", Text, nullable=False),
    # A hash of everything `traits` is built from: an unchanged profile is recognised without
    # building its JSON or reading the stored one.
    Column("fingerprint", BigInteger, nullable=False),
    Column("updated_seq", Integer, nullable=False),
)

profile_members = Table(
    "profile_members",
    metadata,
    Column("system", String(64), primary_key=True),
    Column("record_id", String(255), primary_key=True),
    Column("profile_id", String(64), nullable=False, index=True),
)

identity_links = Table(
    "identity_links",
    metadata,
    Column("a", String(320), primary_key=True),
    Column("b", String(320), primary_key=True),
    Column("kind", String(32), nullable=False),
    Column("value", String(320), nullable=False),
)

profile_aliases = Table(
    "profile_aliases",
    metadata,
    Column("alias", String(64), primary_key=True),
    Column("profile_id", String(64), nullable=False),
    Column("seq", Integer, nullable=False),
)

# An alias whose id no live profile holds. When a merge comes apart, the part without the
# surviving id is named afresh from its records, and that can be the very id it had before the
# merge: its old alias row stays, and followed it would send a lookup of a live person's id (and
# `forget` of it) to the person it was once merged into.
RETIRED = ~exists().where(profiles.c.profile_id == profile_aliases.c.alias)


pushed = Table(
    "pushed",
    metadata,
    Column("system", String(64), primary_key=True),
    Column("record_id", String(255), primary_key=True),
    Column("state", Text, nullable=False),
    Column("pushed_seq", Integer, nullable=False),
    Column("pushed_at", String(40), nullable=False),
)

pending = Table(
    "pending",
    metadata,
    Column("system", String(64), primary_key=True),
    Column("record_id", String(255), primary_key=True),
    Column("message", Text, nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("first_at", String(40), nullable=False),
    Column("last_at", String(40), nullable=False),
)

runs = Table(
    "runs",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("run_id", String(36), nullable=False, unique=True),
    Column("command", String(32), nullable=False),
    Column("started_at", String(40), nullable=False),
    Column("finished_at", String(40)),
    Column("status", String(16), nullable=False),
    Column("summary", Text),
)

system_runs = Table(
    "system_runs",
    metadata,
    Column("run_seq", Integer, primary_key=True),
    Column("system", String(64), primary_key=True),
    Column("status", String(16), nullable=False),
    Column("error", Text),
    Column("finished_at", String(40), nullable=False),
    Column("counts", Text, nullable=False),
)

segment_history = Table(
    "segment_history",
    metadata,
    Column("profile_id", String(64), primary_key=True),
    Column("segment", String(64), primary_key=True),
    Column("entered_seq", Integer, primary_key=True),
    Column("entered_at", String(40), nullable=False),
    Column("exited_seq", Integer),
    Column("exited_at", String(40)),
    # Exits only: a first run opens an entry per profile and segment (461,000 at 200,000 contacts),
    # none of them exited, and a partial index takes none of those rows (bench/RESULTS.md, schema 13).
    Index("ix_segment_history_exited", "exited_seq", sqlite_where=EXITED, postgresql_where=EXITED),
    Index("ix_segment_history_segment", "segment", "entered_seq"),
)

segment_runs = Table(
    "segment_runs",
    metadata,
    Column("seq", Integer, primary_key=True),
    Column("segment", String(64), primary_key=True),
    Column("at", String(40), nullable=False),
    Column("size", Integer, nullable=False),
    Column("revenue_cents", BigInteger, nullable=False),
    Column("profiles", Integer, nullable=False),
    Column("total_revenue_cents", BigInteger, nullable=False),
)

profile_tiers = Table(
    "profile_tiers",
    metadata,
    Column("profile_id", String(64), primary_key=True),
    Column("tier", String(64), nullable=False),
    Column("qualified_at", String(40), nullable=False),
    Column("since_seq", Integer, nullable=False),
)

# The right to be forgotten (sync/state/erasure.py): per `forget`, when it was asked and done; the
# vendor records whose crmsync tags and fields are still to be removed; and a salted hash of each
# erased record's identity, which extract checks so those records are never stored again.
erasures = Table(
    "erasures",
    metadata,
    Column("erasure_id", String(36), primary_key=True),
    Column("requested_at", String(40), nullable=False),
    Column("completed_at", String(40)),
    Column("profiles", Integer, nullable=False),
)

erasure_targets = Table(
    "erasure_targets",
    metadata,
    Column("erasure_id", String(36), primary_key=True),
    Column("system", String(64), primary_key=True),
    Column("record_id", String(255), primary_key=True),
    Column("known", Text, nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("message", Text),
)

resolution_snapshot = Table(
    "resolution_snapshot",
    metadata,
    Column("name", String(32), primary_key=True),
    Column("inputs", Text, nullable=False),  # what it was made from (sync/resolution_snapshot.py)
    Column("data", LargeBinary, nullable=False),
)

forgotten = Table(
    "forgotten",
    metadata,
    Column("key_hash", String(64), primary_key=True),
    Column("erasure_id", String(36), nullable=False),
)

meta = Table(
    "meta",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)


class StateVersionError(RuntimeError):
    """The state database was written with a different schema."""


def stored_version(conn: Connection) -> str | None:
    """The schema revision a state holds: Alembic's `alembic_version`, else (a state written before
    Alembic) `meta.schema_version`; None when the database holds no crmsync state at all."""
    found = inspect(conn)
    if found.has_table("alembic_version"):
        version = conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
        if version is not None:
            return str(version)
    if found.has_table("meta"):
        version = conn.execute(select(meta.c.value).where(meta.c.key == "schema_version")).scalar()
        return None if version is None else str(version)
    return None


def is_older(version: str) -> bool:
    """Whether a stored revision is one this code upgrades from (revision ids are the schema numbers)."""
    return version.isdigit() and int(version) < int(SCHEMA_VERSION)


def _where(db: Database) -> str:
    return db.url.split("///")[-1] if db.is_sqlite else "the configured database"


def open_schema(db: Database) -> None:
    """Make a new state at this code's schema, or check that an existing one is at it.

    An existing state is only read here (no table is created, nothing written), so the read-only
    commands leave an older state exactly as it was. An older one is refused with what to do:
    `crmsync migrate` (which a writing command does itself under the writer lock, see
    sync/runtime.py); a newer one with the version this crmsync reads."""
    with db.engine.connect() as conn:
        found = stored_version(conn)
        new = found is None and _never_used(conn)
    if new:
        _create(db)
        return
    if found == SCHEMA_VERSION:
        return
    where = _where(db)
    if found is None:
        raise StateVersionError(f"{where} holds tables but no crmsync schema version: not a crmsync state")
    if is_older(found):
        backup = "a backup is written beside it first" if db.is_sqlite else "back it up first"
        raise StateVersionError(
            f"the state at {where} has schema {found}, and this crmsync reads schema {SCHEMA_VERSION}: "
            f"run `crmsync migrate` to upgrade it in place ({backup})"
        )
    raise StateVersionError(
        f"the state at {where} was written by a newer crmsync (schema {found}; this one reads "
        f"{SCHEMA_VERSION}): run that version, or restore the backup written before it upgraded the state"
    )


def _never_used(conn: Connection) -> bool:
    """No crmsync state here yet: no tables, or only some of ours with no run ever started (a
    creation that stopped half-way: SQLite's driver commits each CREATE TABLE as it goes)."""
    names = set(inspect(conn).get_table_names())
    if not names:
        return True
    if not names <= set(metadata.tables) | {"alembic_version"}:
        return False
    return "runs" not in names or conn.execute(select(runs.c.seq).limit(1)).first() is None


def _create(db: Database) -> None:
    """A new state: today's tables, stamped with the head revision in the same transaction."""
    from sync.state.migrations import stamp

    with db.engine.begin() as conn:
        metadata.create_all(conn)  # only the missing ones
        if conn.execute(select(meta.c.value).where(meta.c.key == "schema_version")).scalar() is None:
            conn.execute(insert(meta).values(key="schema_version", value=SCHEMA_VERSION))
        stamp(conn, SCHEMA_VERSION)
