"""Schema 12: `ix_contacts_changed` and `ix_orders_changed`, on `changed_seq`. Every compute first
reads the count, highest and sum of `changed_seq` of both tables (what vouches that nothing changed
since the last resolution, sync/state/compute.py `input_marks`), and a cycle by difference reads the
rows written since a run: both were scans of every contact and every order (5,000,000 rows at a
large merchant), and are now read from the index.

Revision ID: 12
Revises: 11
"""

from __future__ import annotations

from alembic import op

from sync.state.migrations.steps import refuse_downgrade, set_schema_version

revision = "12"
down_revision = "11"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_contacts_changed", "contacts", ["changed_seq"])
    op.create_index("ix_orders_changed", "orders", ["changed_seq"])
    set_schema_version(revision)


def downgrade() -> None:
    refuse_downgrade(revision)
