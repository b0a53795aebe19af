"""Schema 13: `ix_segment_history_exited` holds only the entries that ended (`exited_seq IS NOT
NULL`). Read for "who left since run N" (`transitions`), which names an exit run; but every entry
a run opens went into it too, with a NULL, and a first run opens one per profile and segment
(461,000 at 200,000 contacts). Those inserts now skip the index: the first run's segment history
took about a quarter less time (bench/RESULTS.md). Open entries are found by their profile and
segment (the primary key) or by segment (`ix_segment_history_segment`), as before.

Revision ID: 13
Revises: 12
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from sync.state.migrations.steps import refuse_downgrade, set_schema_version

revision = "13"
down_revision = "12"
branch_labels = None
depends_on = None

EXITED = sa.text("exited_seq IS NOT NULL")


def upgrade() -> None:
    op.drop_index("ix_segment_history_exited", table_name="segment_history")
    op.create_index(
        "ix_segment_history_exited",
        "segment_history",
        ["exited_seq"],
        sqlite_where=EXITED,
        postgresql_where=EXITED,
    )
    set_schema_version(revision)


def downgrade() -> None:
    refuse_downgrade(revision)
