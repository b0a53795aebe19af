"""Schema 11: `contacts.given_name` holds any name the mapping keeps. The mapping keeps text up to
1,000 characters (mapping/normalize/text.py), and the column was VARCHAR(255): PostgreSQL refused
the page holding a longer first name, every cycle, so the system read nothing past it (SQLite
ignores declared lengths and stored it). Now TEXT. On PostgreSQL the change from VARCHAR is
binary-compatible (no table rewrite); SQLite needs no change to store it, so its declared type is
left as it was, rather than rebuild the contacts table for a name.

Revision ID: 11
Revises: 10
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from sync.state.migrations.steps import refuse_downgrade, set_schema_version

revision = "11"
down_revision = "10"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.alter_column("contacts", "given_name", type_=sa.Text, existing_type=sa.String(255), existing_nullable=True)
    set_schema_version(revision)


def downgrade() -> None:
    refuse_downgrade(revision)
