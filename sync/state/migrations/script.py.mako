"""${message}

Revision ID: ${up_revision}
Revises: ${down_revision | comma,n}
Create Date: ${create_date}

What changed, and what happens to the rows already stored (a revision upgrades a state in place:
profile ids, segment history, tiers, the ledger and checkpoints are kept; a column whose content
cannot be derived here says what the next cycle does about it).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
${imports if imports else ""}
from sync.state.migrations.steps import refuse_downgrade, set_schema_version

revision = ${repr(up_revision)}
down_revision = ${repr(down_revision)}
branch_labels = None
depends_on = None


def upgrade() -> None:
    ${upgrades if upgrades else "pass"}
    set_schema_version(revision)


def downgrade() -> None:
    refuse_downgrade(revision)
