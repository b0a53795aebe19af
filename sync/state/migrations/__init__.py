"""The state schema's migrations (Alembic), run programmatically: `upgrade` below, called by
`sync.migrate.migrate_state` (`crmsync migrate`, and automatically at start under the writer lock).

One revision per state schema number; the revision ids are those numbers, and each revision keeps
`meta.schema_version` equal to its id:

- 1 (6045d9c): the first state: raw records, contacts, orders, quarantine, checkpoints, profiles,
  their members and aliases, the ledger (pushed), pending, runs, system runs, meta.
- 2 (b6bb074): contacts.links; identity_links (added at 4587162 without a new number).
- 3 (95dfcaa): contacts lose first/last name and gain email_key, email_role, phone_kind, details
  (phone now E.164); segment_history, segment_runs, profile_tiers (from a72f6a2, merged at
  3457282), seeded from the profiles where a state had none.
- 4 (9854a21): contacts.given_name, orders.email_key, orders.created_epoch.
- 5 (9f3a843): profiles.fingerprint.
- 6: Alembic manages the schema (the alembic_version table); no table changes. Everything crmsync
  changed after 9f3a843 without a new number reads the older rows as they are (checked by the
  schema-5 fixture: upgraded, it syncs with 0 writes).

A state written before Alembic has no `alembic_version` table; its `meta.schema_version` ("1".."5")
is its revision: it is stamped with it, then upgraded to head, all in one transaction. One number
may name states with and without a table an old crmsync added without raising it (see
steps.create_missing), so revisions look at the database before they add a table.

Columns only the mapping can fill (contacts' normalised fields, orders.email_key) are left empty by
the upgrade and filled by the next cycle, which maps every stored raw record again because the
upgrade removed `meta.mapping_version` (sync/extract.py `remap_if_needed`); nothing is read again
from the vendors for it. The runs, the ledger, the checkpoints and the profiles stay as they were.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, create_engine, event

SCRIPT_LOCATION = Path(__file__).resolve().parent

# `meta.schema_version` of a state written before Alembic -> the revision it is stamped with.
LEGACY = {"1": "1", "2": "2", "3": "3", "4": "4", "5": "5"}


def alembic_config(connection: Connection | None = None) -> Config:
    """Alembic's configuration without an alembic.ini: the script location is this package."""
    config = Config()
    config.set_main_option("script_location", str(SCRIPT_LOCATION))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def script() -> ScriptDirectory:
    return ScriptDirectory.from_config(alembic_config())


def head() -> str:
    found = script().get_current_head()
    assert found is not None
    return found


def revisions_between(current: str | None, target: str) -> list[str]:
    """The revisions an upgrade from `current` (None: nothing) to `target` applies, oldest first."""
    steps = [rev.revision for rev in script().iterate_revisions(target, current)]
    return list(reversed(steps))


def migration_engine(url: str) -> Engine:
    """An engine for migrating: on SQLite the driver's own transaction handling is switched off and
    a real BEGIN issued, so DDL (CREATE, ALTER, the table copies of batch mode) commits or rolls back
    with the rest (pysqlite otherwise commits DDL as it goes)."""
    if not url.startswith("sqlite"):
        return create_engine(url)
    engine = create_engine(url, connect_args={"timeout": 30})

    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection: Any, record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(conn: Connection) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


# Alembic's commands install their context as module globals (`alembic.context`, `alembic.op`), so
# two states opened at once in one process (the chaos lab's side-by-side lanes) would tear each
# other's down mid-command: one Alembic command at a time per process.
_ONE_AT_A_TIME = threading.Lock()


@contextmanager
def _quiet_alembic() -> Iterator[None]:
    """One Alembic command at a time (above). Alembic configures nothing itself here, but its
    loggers speak at INFO through the root logger; crmsync reports the migration in its own log
    line instead."""
    import logging

    with _ONE_AT_A_TIME:
        logger = logging.getLogger("alembic")
        level = logger.level
        logger.setLevel(logging.WARNING)
        try:
            yield
        finally:
            logger.setLevel(level)


def stamp(connection: Connection, revision: str) -> None:
    """Record `revision` as the state's (no revision runs), inside the caller's transaction."""
    with _quiet_alembic():
        command.stamp(alembic_config(connection), revision)


def upgrade(connection: Connection, legacy: str | None, target: str = "head") -> list[str]:
    """Upgrade the state on `connection` (inside the caller's transaction) to `target`, first
    stamping a pre-Alembic state with its revision (`legacy`: its meta.schema_version). Returns the
    revisions applied, oldest first."""
    if legacy is not None:
        stamp(connection, LEGACY[legacy])
    config = alembic_config(connection)
    applied: list[str] = []
    config.attributes["applied"] = applied
    with _quiet_alembic():
        command.upgrade(config, target)
    return applied
