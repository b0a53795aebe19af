"""Schema 7: the right to be forgotten (`crmsync forget`, sync/state/erasure.py).

`erasures` (one row per `forget`: when it was asked and when every system confirmed),
`erasure_targets` (the vendor records whose crmsync tags and fields are still to be removed, with
what crmsync knew they hold; a row goes once its vendor confirmed) and `forgotten` (a salted hash
of each erased record's identity, so extract never stores those records again). New tables only:
nothing existing changes.

Revision ID: 7
Revises: 6
"""

from __future__ import annotations

import sqlalchemy as sa

from sync.state.migrations.steps import create_missing, refuse_downgrade, set_schema_version

revision = "7"
down_revision = "6"
branch_labels = None
depends_on = None


def upgrade() -> None:
    step = sa.MetaData()
    create_missing(
        sa.Table(
            "erasures",
            step,
            sa.Column("erasure_id", sa.String(36), primary_key=True),
            sa.Column("requested_at", sa.String(40), nullable=False),
            sa.Column("completed_at", sa.String(40)),
            sa.Column("profiles", sa.Integer, nullable=False),
        ),
        sa.Table(
            "erasure_targets",
            step,
            sa.Column("erasure_id", sa.String(36), primary_key=True),
            sa.Column("system", sa.String(64), primary_key=True),
            sa.Column("record_id", sa.String(255), primary_key=True),
            sa.Column("known", sa.Text, nullable=False),
            sa.Column("attempts", sa.Integer, nullable=False),
            sa.Column("message", sa.Text),
        ),
        sa.Table(
            "forgotten",
            step,
            sa.Column("key_hash", sa.String(64), primary_key=True),
            sa.Column("erasure_id", sa.String(36), nullable=False),
        ),
    )
    set_schema_version(revision)


def downgrade() -> None:
    refuse_downgrade(revision)
