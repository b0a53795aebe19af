"""Schema 8: what orders say beyond their value (mapping/bases.py).

`orders.discount` (a discount code was used; NULL where the system does not say),
`orders.categories` (the lines' product types or categories, a JSON list) and `orders.unfinished`
(an abandoned checkout, or an order left pending or failed). Mapping results: existing rows get
NULL / false and the next cycle maps every stored raw record again before it computes
(`remap_at_next_cycle`).

Revision ID: 8
Revises: 7
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from sync.state.migrations.steps import refuse_downgrade, remap_at_next_cycle, set_schema_version

revision = "8"
down_revision = "7"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("orders", sa.Column("discount", sa.Boolean))
    op.add_column("orders", sa.Column("categories", sa.Text))
    op.add_column("orders", sa.Column("unfinished", sa.Boolean, nullable=False, server_default=sa.false()))
    remap_at_next_cycle()
    set_schema_version(revision)


def downgrade() -> None:
    refuse_downgrade(revision)
