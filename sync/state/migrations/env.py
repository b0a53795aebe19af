"""Alembic's entry point for the state migrations, run programmatically by
`sync.state.migrations.upgrade` (no alembic.ini): the caller hands over an open connection inside
its own transaction in `config.attributes["connection"]`, so every revision of one upgrade commits
or rolls back together (on SQLite too: the connection comes from an engine that issues a real
BEGIN, see `sync.state.migrations.migration_engine`).

Run by hand, `alembic -x url=sqlite:///crmsync.db upgrade head` with a `script_location` pointing
here also works (a connection of its own, one transaction); offline (`--sql`) mode is refused,
since some revisions compute values in Python.
"""

from __future__ import annotations

from typing import Any

from alembic import context
from sqlalchemy import Connection

from sync.state.schema import metadata

config = context.config


def _record(ctx: Any, step: Any, heads: Any, run_args: Any) -> None:
    """Each revision applied, in order, for the caller's report."""
    applied = config.attributes.get("applied")
    if applied is not None and step.is_upgrade and step.up_revision_id is not None:
        applied.append(step.up_revision_id)


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=True,  # SQLite alters a table by copying it; revisions use batch_alter_table
        transactional_ddl=True,  # one transaction for the whole upgrade (see the module docstring)
        on_version_apply=_record,
    )
    with context.begin_transaction():
        context.run_migrations()


def run() -> None:
    if context.is_offline_mode():
        raise RuntimeError("the state migrations compute values in Python: run them online, not with --sql")
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    url = context.get_x_argument(as_dictionary=True).get("url") or config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("no database: pass -x url=... or set sqlalchemy.url")
    from sync.state.migrations import migration_engine

    engine = migration_engine(url)
    try:
        with engine.begin() as own:
            _run(own)
    finally:
        engine.dispose()


run()
