"""Schema 9: `resolution_snapshot`, the last compute's resolution and order columns with the inputs
they were made from (sync/resolution_snapshot.py). A new table only: nothing existing changes, and
the first cycle after the upgrade resolves in full, as before.

Revision ID: 9
Revises: 8
"""

from __future__ import annotations

import sqlalchemy as sa

from sync.state.migrations.steps import create_missing, refuse_downgrade, set_schema_version

revision = "9"
down_revision = "8"
branch_labels = None
depends_on = None


def upgrade() -> None:
    create_missing(
        sa.Table(
            "resolution_snapshot",
            sa.MetaData(),
            sa.Column("name", sa.String(32), primary_key=True),
            sa.Column("inputs", sa.Text, nullable=False),
            sa.Column("data", sa.LargeBinary, nullable=False),
        )
    )
    set_schema_version(revision)


def downgrade() -> None:
    refuse_downgrade(revision)
