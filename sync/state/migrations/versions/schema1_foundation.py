"""Schema 1 (commit 6045d9c, "Foundation"): the state as the first crmsync wrote it.

A state from before Alembic is stamped with the revision of its `meta.schema_version` and never
runs this one; it creates the schema-1 tables from nothing, so the whole chain can be tested (an
empty database upgraded to head must equal today's tables). A new state is made from today's
tables directly and stamped head.

Revision ID: 1
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from sync.state.migrations.steps import refuse_downgrade, set_schema_version

revision = "1"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "raw_records",
        sa.Column("system", sa.String(64), primary_key=True),
        sa.Column("kind", sa.String(16), primary_key=True),
        sa.Column("record_id", sa.String(255), primary_key=True),
        sa.Column("content_hash", sa.String(64), nullable=False),
        sa.Column("payload", sa.Text, nullable=False),
        sa.Column("updated_at", sa.String(40)),
        sa.Column("changed_seq", sa.Integer, nullable=False),
    )
    op.create_table(
        "contacts",
        sa.Column("system", sa.String(64), primary_key=True),
        sa.Column("record_id", sa.String(255), primary_key=True),
        sa.Column("email", sa.String(320)),
        sa.Column("phone", sa.String(64)),
        sa.Column("first_name", sa.String(255)),
        sa.Column("last_name", sa.String(255)),
        sa.Column("updated_at", sa.String(40)),
        sa.Column("owned", sa.Text, nullable=False),
        sa.Column("changed_seq", sa.Integer, nullable=False),
    )
    op.create_table(
        "orders",
        sa.Column("system", sa.String(64), primary_key=True),
        sa.Column("order_id", sa.String(255), primary_key=True),
        sa.Column("customer_id", sa.String(255)),
        sa.Column("email", sa.String(320)),
        sa.Column("amount", sa.String(40), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("created_at", sa.String(40), nullable=False),
        sa.Column("counts", sa.Boolean, nullable=False),
        sa.Column("changed_seq", sa.Integer, nullable=False),
    )
    op.create_index("ix_orders_customer", "orders", ["system", "customer_id"])
    op.create_table(
        "quarantine",
        sa.Column("system", sa.String(64), primary_key=True),
        sa.Column("kind", sa.String(16), primary_key=True),
        sa.Column("record_id", sa.String(255), primary_key=True),
        sa.Column("reason", sa.String(64), nullable=False),
        sa.Column("message", sa.Text, nullable=False),
        sa.Column("content_hash", sa.String(64), nullable=False),
        sa.Column("since_seq", sa.Integer, nullable=False),
    )
    op.create_table(
        "checkpoints",
        sa.Column("system", sa.String(64), primary_key=True),
        sa.Column("stream", sa.String(64), primary_key=True),
        sa.Column("value", sa.Text, nullable=False),
        sa.Column("seq", sa.Integer, nullable=False),
    )
    op.create_table(
        "profiles",
        sa.Column("profile_id", sa.String(64), primary_key=True),
        sa.Column("created_seq", sa.Integer, nullable=False),
        sa.Column("segments", sa.Text, nullable=False),
        sa.Column("tier", sa.String(64)),
        sa.Column("traits", sa.Text, nullable=False),
        sa.Column("updated_seq", sa.Integer, nullable=False),
    )
    op.create_table(
        "profile_members",
        sa.Column("system", sa.String(64), primary_key=True),
        sa.Column("record_id", sa.String(255), primary_key=True),
        sa.Column("profile_id", sa.String(64), nullable=False),
    )
    op.create_index("ix_profile_members_profile_id", "profile_members", ["profile_id"])
    op.create_table(
        "profile_aliases",
        sa.Column("alias", sa.String(64), primary_key=True),
        sa.Column("profile_id", sa.String(64), nullable=False),
        sa.Column("seq", sa.Integer, nullable=False),
    )
    op.create_table(
        "pushed",
        sa.Column("system", sa.String(64), primary_key=True),
        sa.Column("record_id", sa.String(255), primary_key=True),
        sa.Column("state", sa.Text, nullable=False),
        sa.Column("pushed_seq", sa.Integer, nullable=False),
        sa.Column("pushed_at", sa.String(40), nullable=False),
    )
    op.create_table(
        "pending",
        sa.Column("system", sa.String(64), primary_key=True),
        sa.Column("record_id", sa.String(255), primary_key=True),
        sa.Column("message", sa.Text, nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("first_at", sa.String(40), nullable=False),
        sa.Column("last_at", sa.String(40), nullable=False),
    )
    op.create_table(
        "runs",
        sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("run_id", sa.String(36), nullable=False, unique=True),
        sa.Column("command", sa.String(32), nullable=False),
        sa.Column("started_at", sa.String(40), nullable=False),
        sa.Column("finished_at", sa.String(40)),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("summary", sa.Text),
    )
    op.create_table(
        "system_runs",
        sa.Column("run_seq", sa.Integer, primary_key=True),
        sa.Column("system", sa.String(64), primary_key=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("error", sa.Text),
        sa.Column("finished_at", sa.String(40), nullable=False),
        sa.Column("counts", sa.Text, nullable=False),
    )
    op.create_table(
        "meta",
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("value", sa.Text, nullable=False),
    )
    set_schema_version(revision)


def downgrade() -> None:
    refuse_downgrade(revision)
