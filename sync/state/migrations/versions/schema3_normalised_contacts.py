"""Schema 3 (commit 95dfcaa, "Mapping in depth", merged with the segments engine in 3457282).

Contacts carry what identity resolution compares instead of the raw name columns:
- `first_name`, `last_name` go: names now live, normalised (given name, infix, family name,
  initials) with the address, in `details` (JSON); `phone` changes meaning (E.164 where schema 2
  kept the number as typed);
- `email_key` (the address as compared: no case, +tags, Gmail dots), `email_role` (info@, sales@
  never join), `phone_kind` (mobile / landline / unparseable), `details`: new, and only the mapping
  can compute them from the vendor record. Existing rows get NULL / false / NULL / "{}" (and `phone`
  keeps the number as typed), and the next cycle maps every stored raw record again
  (`remap_at_next_cycle`) before it resolves identities, so no cycle ever resolves with the
  placeholders; the raw records are all kept, so nothing needs reading again from the vendors.
  The dropped names are in those raw records too.
- indexes on `email_key` and `phone` (looked up by `crmsync explain`).

The segment tables (`segment_history`, `segment_runs`, `profile_tiers`) arrived with the segments
engine (a72f6a2), written at schema 2 on its branch and merged at 3: a schema-2 state may have them
(a72f6a2, kept as they are) or not (b6bb074: created here and seeded from each profile's stored
segments and tier, see steps.seed_segment_tables; the lifecycle segments and tier grace began
with that engine, so the first cycle adds the lifecycle entries).

SQLite cannot drop a column in place on every version crmsync supports, so `contacts` is copied
(`batch_alter_table`); PostgreSQL alters it.

Revision ID: 3
Revises: 2
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from sync.state.migrations.steps import (
    columns_of,
    create_missing,
    refuse_downgrade,
    remap_at_next_cycle,
    seed_segment_tables,
    segment_tables,
    set_schema_version,
)

revision = "3"
down_revision = "2"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if len(create_missing(*segment_tables())) == 3:
        seed_segment_tables()
    have = columns_of("contacts")
    with op.batch_alter_table("contacts") as batch:
        for name in ("first_name", "last_name"):
            if name in have:
                batch.drop_column(name)
        batch.add_column(sa.Column("email_key", sa.String(320)))
        batch.add_column(sa.Column("email_role", sa.Boolean, nullable=False, server_default=sa.false()))
        batch.add_column(sa.Column("phone_kind", sa.String(16)))
        batch.add_column(sa.Column("details", sa.Text, nullable=False, server_default="{}"))
        batch.create_index("ix_contacts_email_key", ["email_key"])
        batch.create_index("ix_contacts_phone", ["phone"])
    remap_at_next_cycle()
    set_schema_version(revision)


def downgrade() -> None:
    refuse_downgrade(revision)
