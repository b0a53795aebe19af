"""Schema 5 (commit 9f3a843, "Profiles carry a fingerprint of what their traits are built from").

`profiles.fingerprint` (NOT NULL): a 64-bit hash of what a profile's traits are built from, so an
unchanged profile is recognised without building its traits JSON. It is a hash of the compute's
own input, which the stored row does not hold, so existing rows get 0, which no computed
fingerprint is taken to equal: the next cycle rewrites every profile row once (traits, same id,
same segments unless they really changed), and since the segments are compared apart from the
fingerprint, that rewrite opens and closes no segment history and writes nothing to any vendor.

Revision ID: 5
Revises: 4
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from sync.state.migrations.steps import refuse_downgrade, set_schema_version

revision = "5"
down_revision = "4"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("profiles", sa.Column("fingerprint", sa.BigInteger, nullable=False, server_default="0"))
    set_schema_version(revision)


def downgrade() -> None:
    refuse_downgrade(revision)
