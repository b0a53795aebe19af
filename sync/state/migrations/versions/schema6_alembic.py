"""Schema 6: the state schema is managed by Alembic from here on (the `alembic_version` table).

Revision ID: 6
Revises: 5
"""

from __future__ import annotations

from sync.state.migrations.steps import refuse_downgrade, set_schema_version

revision = "6"
down_revision = "5"
branch_labels = None
depends_on = None


def upgrade() -> None:
    set_schema_version(revision)


def downgrade() -> None:
    refuse_downgrade(revision)
