"""Schema 2 (commit b6bb074, "Kit: ... cross-system id links joined by identity resolution").

- `contacts.links` (new): the stored ids of other systems' records a contact names (an AFAS
  person holding a web shop's customer number), as a JSON list. Only the mapping can read them
  out of a vendor record, so existing rows get "[]" and the next cycle maps every stored raw
  record again (`remap_at_next_cycle`), which fills them; no vendor is read again for it.
- `identity_links` (which identifier joined which records): added by commit 4587162 while the
  schema number stayed 1, so a schema-1 state may or may not have it; created here when missing
  (empty: the next cycle's identity resolution writes it).

Revision ID: 2
Revises: 1
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from sync.state.migrations.steps import create_missing, refuse_downgrade, remap_at_next_cycle, set_schema_version

revision = "2"
down_revision = "1"
branch_labels = None
depends_on = None

_tables = sa.MetaData()
identity_links = sa.Table(
    "identity_links",
    _tables,
    sa.Column("a", sa.String(320), primary_key=True),
    sa.Column("b", sa.String(320), primary_key=True),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("value", sa.String(320), nullable=False),
)


def upgrade() -> None:
    create_missing(identity_links)
    # Adding a NOT NULL column with a constant default is a plain ALTER TABLE on SQLite and PostgreSQL.
    op.add_column("contacts", sa.Column("links", sa.Text, nullable=False, server_default="[]"))
    remap_at_next_cycle()
    set_schema_version(revision)


def downgrade() -> None:
    refuse_downgrade(revision)
