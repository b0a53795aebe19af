"""Schema 10: `ix_contacts_linking`, a partial index of the contacts that store links to other
systems' records (few: `links` is '[]' on nearly every row). A cycle that resolves only the touched
components looks for the contacts linking to a changed one, and finds them through it instead of
scanning every contact (sync/state/compute.py, `contacts_holding`).

Revision ID: 10
Revises: 9
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from sync.state.migrations.steps import refuse_downgrade, set_schema_version

revision = "10"
down_revision = "9"
branch_labels = None
depends_on = None

LINKING = sa.text("links <> '[]'")


def upgrade() -> None:
    op.create_index(
        "ix_contacts_linking",
        "contacts",
        ["system", "record_id"],
        sqlite_where=LINKING,
        postgresql_where=LINKING,
    )
    set_schema_version(revision)


def downgrade() -> None:
    refuse_downgrade(revision)
