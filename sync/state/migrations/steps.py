"""What the revisions share: looking at the database as it is (a state written by one schema number
may still differ, see the package docstring), the bookkeeping in `meta`, and refusing downgrades.

Revisions never import today's tables from sync/state/schema.py: each one spells out the tables and
columns of its own step, so a later change to the schema cannot change what an old step does.
"""

from __future__ import annotations

import json

import sqlalchemy as sa
from alembic import op


def _inspector() -> sa.Inspector:
    return sa.inspect(op.get_bind())


def has_table(name: str) -> bool:
    return _inspector().has_table(name)


def columns_of(table: str) -> set[str]:
    return {column["name"] for column in _inspector().get_columns(table)}


def create_missing(*tables: sa.Table) -> list[str]:
    """Create each table (with its indexes) that the database does not have yet; the names created.

    For tables an old crmsync added without raising the schema number: `identity_links` (added
    while the schema was still 1) and the segment tables (added on a branch at schema 2 and
    released again at 3 without them), so one number can name states with and without them."""
    created = []
    for table in tables:
        if not has_table(table.name):
            table.create(op.get_bind())
            created.append(table.name)
    return created


def segment_tables() -> tuple[sa.Table, ...]:
    """The segment tables as the segments engine (a72f6a2) made them (revisions 3 and 4 create
    them where missing)."""
    tables = sa.MetaData()
    return (
        sa.Table(
            "segment_history",
            tables,
            sa.Column("profile_id", sa.String(64), primary_key=True),
            sa.Column("segment", sa.String(64), primary_key=True),
            sa.Column("entered_seq", sa.Integer, primary_key=True),
            sa.Column("entered_at", sa.String(40), nullable=False),
            sa.Column("exited_seq", sa.Integer),
            sa.Column("exited_at", sa.String(40)),
            sa.Index("ix_segment_history_exited", "exited_seq"),
            sa.Index("ix_segment_history_segment", "segment", "entered_seq"),
        ),
        sa.Table(
            "segment_runs",
            tables,
            sa.Column("seq", sa.Integer, primary_key=True),
            sa.Column("segment", sa.String(64), primary_key=True),
            sa.Column("at", sa.String(40), nullable=False),
            sa.Column("size", sa.Integer, nullable=False),
            sa.Column("revenue_cents", sa.BigInteger, nullable=False),
            sa.Column("profiles", sa.Integer, nullable=False),
            sa.Column("total_revenue_cents", sa.BigInteger, nullable=False),
        ),
        sa.Table(
            "profile_tiers",
            tables,
            sa.Column("profile_id", sa.String(64), primary_key=True),
            sa.Column("tier", sa.String(64), nullable=False),
            sa.Column("qualified_at", sa.String(40), nullable=False),
            sa.Column("since_seq", sa.Integer, nullable=False),
        ),
    )


_meta = sa.table("meta", sa.column("key", sa.String), sa.column("value", sa.Text))
_profiles = sa.table(
    "profiles",
    sa.column("profile_id", sa.String),
    sa.column("segments", sa.Text),
    sa.column("tier", sa.String),
    sa.column("updated_seq", sa.Integer),
)
_runs = sa.table("runs", sa.column("seq", sa.Integer), sa.column("started_at", sa.String))


def seed_segment_tables() -> None:
    """Fill newly created segment tables from what the state knows: each profile's segments and
    tier as its last computing run left them (`profiles`).

    The crmsync versions without these tables computed every profile at every run and wrote the
    profiles whose verdict changed (earlier ones rewrote them all), each row stamped with that
    run (`updated_seq`). So each profile was in its segments at run `updated_seq`, and qualified
    for its tier at the latest such run, when every verdict was computed again. Hence:
    - segment_history: an open entry per (profile, segment) entered at `updated_seq`, dated by
      that run's start. The true entry may be earlier; nothing in the state says when, and this
      is the latest it can have been ("member since at least");
    - profile_tiers: the tier, qualified at the start of the latest run: today's grace period then
      runs from the last time the old crmsync saw the customer qualify, so a customer who now
      qualifies for less keeps the tier it was written with for the grace period, as if this
      crmsync had been running (without this the first cycle would downgrade them at once);
    - segment_runs (sizes per run) stays empty: sizes over time start with the next cycle.
    Nothing is seeded when no run dates the profiles."""
    bind = op.get_bind()
    started = dict(bind.execute(sa.select(_runs.c.seq, _runs.c.started_at)).all())
    last = bind.execute(sa.select(sa.func.max(_profiles.c.updated_seq))).scalar()
    if last is None or last not in started:
        return
    history = sa.table(
        "segment_history",
        *(sa.column(n) for n in ("profile_id", "segment", "entered_seq", "entered_at", "exited_seq", "exited_at")),
    )
    tiers = sa.table("profile_tiers", *(sa.column(n) for n in ("profile_id", "tier", "qualified_at", "since_seq")))
    entries: list[dict[str, object]] = []
    held: list[dict[str, object]] = []
    query = sa.select(_profiles.c.profile_id, _profiles.c.segments, _profiles.c.tier, _profiles.c.updated_seq)
    for profile_id, segments, tier, seq in bind.execute(query.order_by(_profiles.c.profile_id)):
        at = started.get(seq, started[last])
        for segment in sorted(set(json.loads(segments or "[]"))):
            entries.append({"profile_id": profile_id, "segment": segment, "entered_seq": seq, "entered_at": at})
        if tier:
            held.append({"profile_id": profile_id, "tier": tier, "qualified_at": started[last], "since_seq": seq})
    for start in range(0, len(entries), 10_000):
        bind.execute(sa.insert(history), entries[start : start + 10_000])
    for start in range(0, len(held), 10_000):
        bind.execute(sa.insert(tiers), held[start : start + 10_000])


def set_schema_version(revision: str) -> None:
    """Keep `meta.schema_version` equal to the revision: crmsync before Alembic (and `status`)
    read the number there, and an older crmsync then refuses a newer state instead of misreading it."""
    bind = op.get_bind()
    found = bind.execute(sa.select(_meta.c.value).where(_meta.c.key == "schema_version")).scalar()
    if found is None:
        bind.execute(sa.insert(_meta).values(key="schema_version", value=revision))
    else:
        bind.execute(sa.update(_meta).where(_meta.c.key == "schema_version").values(value=revision))


def remap_at_next_cycle() -> None:
    """Make the next cycle map every stored raw record again with the mapping code of the crmsync
    that runs it (sync/extract.py remaps when `meta.mapping_version` differs from its own): for
    columns of `contacts` / `orders` that only the mapping can fill. Nothing is read again from the
    vendors for it, and no record is lost: the raw records are kept."""
    op.get_bind().execute(sa.delete(_meta).where(_meta.c.key == "mapping_version"))


def refuse_downgrade(revision: str) -> None:
    raise NotImplementedError(
        f"the state migrations do not go back (revision {revision}): restore the copy that "
        "`crmsync migrate` wrote beside the state before it upgraded it (<state>.pre-migrate-<from>-<time>.db)"
    )
