"""Schema 4 (commit 9854a21, "Cycle reads contacts and orders as columns").

The compute reads identity rows and order arrays straight from the driver, so the columns it needs
are stored:
- `contacts.given_name` (a mobile number never joins two records whose given names disagree) and
  `orders.email_key` (the normalised address a guest order links by): mapping results, so existing
  rows get NULL and the next cycle maps every stored raw record again before it computes
  (`remap_at_next_cycle`).
- `orders.created_epoch` (NOT NULL, whole seconds since 1970 UTC, as `int(created_at.timestamp())`):
  computed here from `created_at`: in SQL on SQLite, in Python (as schema 4's code did) for what
  the SQL could not read and on other databases. An order whose date no code can read gets 0
  until that remap maps it again.

A schema-3 state written by 95dfcaa has no segment tables (they were merged in at 3457282, still
schema 3): created here when missing and seeded from the profiles (steps.seed_segment_tables).

Revision ID: 4
Revises: 3
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

from sync.state.migrations.steps import (
    create_missing,
    refuse_downgrade,
    remap_at_next_cycle,
    seed_segment_tables,
    segment_tables,
    set_schema_version,
)

revision = "4"
down_revision = "3"
branch_labels = None
depends_on = None

_orders = sa.table(
    "orders",
    sa.column("system", sa.String),
    sa.column("order_id", sa.String),
    sa.column("created_at", sa.String),
    sa.column("created_epoch", sa.BigInteger),
)


def _epoch(text: str | None) -> int:
    try:
        moment = datetime.fromisoformat(str(text).strip().replace("Z", "+00:00"))
    except ValueError:
        return 0
    return int((moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp())


def _fill_created_epoch() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "sqlite":
        # SQLite's date functions read ISO-8601 with an offset (converted to UTC) and fractions, and
        # give NULL for what they cannot read (left to Python below).
        bind.execute(sa.text("UPDATE orders SET created_epoch = CAST(strftime('%s', created_at) AS INTEGER)"))
    # Elsewhere (PostgreSQL would abort the transaction on one unreadable date), and for what the
    # SQL left: Python, as the code of schema 4 computed it.
    query = sa.select(_orders.c.system, _orders.c.order_id, _orders.c.created_at).where(
        _orders.c.created_epoch.is_(None)
    )
    rows = bind.execute(query).all()
    setter = (
        sa.update(_orders)
        .where(_orders.c.system == sa.bindparam("s"), _orders.c.order_id == sa.bindparam("o"))
        .values(created_epoch=sa.bindparam("e"))
    )
    for start in range(0, len(rows), 10_000):
        chunk = rows[start : start + 10_000]
        bind.execute(setter, [{"s": system, "o": order, "e": _epoch(created)} for system, order, created in chunk])


def upgrade() -> None:
    if len(create_missing(*segment_tables())) == 3:
        seed_segment_tables()
    op.add_column("contacts", sa.Column("given_name", sa.String(255)))
    op.add_column("orders", sa.Column("email_key", sa.String(320)))
    op.add_column("orders", sa.Column("created_epoch", sa.BigInteger))
    _fill_created_epoch()
    with op.batch_alter_table("orders") as batch:
        batch.alter_column("created_epoch", existing_type=sa.BigInteger, nullable=False)
    remap_at_next_cycle()
    set_schema_version(revision)


def downgrade() -> None:
    refuse_downgrade(revision)
