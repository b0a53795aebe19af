"""The erasure journal of a PostgreSQL state (sync/state/erasure_journal.py has the interface and
the entries): the table `erasure_journal` in the schema `<deployment schema>_erasures`
(`shop_erasures.erasure_journal`; `public_erasures` for a state in `public`).

Why a sibling schema: `crmsync backup` dumps the deployment's schema alone (`pg_dump
--schema=<schema>`, sync/backup.py), and `pg_restore` of that dump, with `--clean` or without,
drops and makes only what the dump holds: the deployment's schema and its tables. A table inside
that schema would be dropped and made again from the dump by `--clean` (an older journal: the very
thing it must outlive); one in a schema of its own is in no dump of the deployment and no restore
touches it. Why per deployment, not one shared schema: each deployment's role reads and writes its
own journal only (an agency's shops are separate customers), and the schema is named after the
deployment, so nothing needs configuring. A name longer than PostgreSQL's 63 bytes keeps a hash of
the whole deployment name, so two long names never share a journal.

Written in the erasure's own state transaction (one database, two schemas): the erasure and its
entry commit together or not at all. The SQLite file's order (journal fsynced first, then the
commit, a crash between leaving the journal ahead) is the best a file can do; here no crash can
part them, and the replay's rules are the same either way.

The schema and table are made by the first writing command (under the deployment's writer lock, so
two hosts never make them at once), in a savepoint of its transaction. A role that may not create
them (CREATE on a database is its owner's, granted to no one else by default) gets no journal:
`ready` says why, and the SQL a database owner runs to fix it, to every writing command's log, to
`forget`'s answer and to `status`; until then a restore brings back those forgotten since the
dump, as before the journal (docs/operations.md). A schema of that name holding a crmsync state (another
deployment named `<schema>_erasures`) is never used as a journal.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

from sqlalchemy import BigInteger, Column, Connection, Identity, MetaData, Table, Text, select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.schema import CreateSchema

from sync.state.erasure_journal import Abandoned, JournalContents, JournalEntry, contents_of, line_of
from sync.state.sql import Database

SUFFIX = "_erasures"
TABLE = "erasure_journal"
NAME_BYTES = 63  # PostgreSQL cuts longer identifiers (NAMEDATALEN - 1)
INSUFFICIENT_PRIVILEGE = "42501"


def journal_schema(state_schema: str) -> str:
    """The journal's schema for a deployment's: `<schema>_erasures`, or for a long name its first
    bytes, eight hex digits of its SHA-256 and the suffix (at most 63 bytes, one per deployment)."""
    name = state_schema + SUFFIX
    if len(name.encode()) <= NAME_BYTES:
        return name
    digest = hashlib.sha256(state_schema.encode()).hexdigest()[:8]
    room = NAME_BYTES - len(SUFFIX) - len(digest) - 1
    return f"{state_schema.encode()[:room].decode(errors='ignore')}_{digest}{SUFFIX}"


class TableJournal:
    """The journal of a PostgreSQL state (the module's docstring)."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.state_schema = db.schema or _current_schema(db)
        self.schema = journal_schema(self.state_schema)
        self.table = Table(
            TABLE,
            MetaData(schema=self.schema),
            Column("seq", BigInteger, Identity(always=True), primary_key=True),
            Column("erasure_id", Text, nullable=False),
            Column("line", Text, nullable=False),  # the entry as the file journal's line
        )

    @property
    def where(self) -> str:
        return f"{self.schema}.{TABLE}"

    def set_aside(self) -> str:
        return f"rename the journal table aside (`ALTER TABLE {self.where} RENAME TO {TABLE}_aside`)"

    def ready(self, conn: Connection, make: bool = True) -> str | None:
        tables = self._tables(conn)
        if "meta" in tables:  # a crmsync state's table: another deployment's schema
            return (
                f"the schema {self.schema} holds another crmsync deployment's state, so it cannot hold "
                f"this deployment's erasure journal: {_FALLBACK}"
            )
        if TABLE in tables:
            granted = conn.execute(
                # (Privileges listed together ask for any one of them: each is asked on its own.)
                text(
                    "SELECT has_schema_privilege(:s, 'USAGE') AND has_table_privilege(:t, 'SELECT')"
                    " AND has_table_privilege(:t, 'INSERT')"
                ),
                {"s": self.schema, "t": self._quoted()},
            ).scalar()
            return None if granted else self._not_allowed(conn, "may not read and write it")
        if not make:
            return None if self._may_create(conn) else self._not_allowed(conn, "may not create it")
        try:
            with conn.begin_nested():  # a refusal leaves the caller's transaction as it was
                if not self._schema_exists(conn):
                    conn.execute(CreateSchema(self.schema, if_not_exists=True))
                self.table.create(conn, checkfirst=True)
        except DBAPIError as exc:
            if getattr(exc.orig, "sqlstate", None) != INSUFFICIENT_PRIVILEGE:
                raise
            return self._not_allowed(conn, f"may not create it ({str(exc.orig).strip().splitlines()[0]})")
        return None

    def read(self, conn: Connection) -> JournalContents:
        if TABLE not in self._tables(conn):
            return JournalContents([], [])
        lines = (str(line) for (line,) in conn.execute(select(self.table.c.line).order_by(self.table.c.seq)))
        return contents_of(lines, self.where)

    def append(self, conn: Connection, entries: Iterable[JournalEntry | Abandoned]) -> None:
        rows = [{"erasure_id": entry.erasure_id, "line": line_of(entry)} for entry in entries]
        if rows:
            conn.execute(self.table.insert(), rows)

    def _tables(self, conn: Connection) -> set[str]:
        """The tables of the journal's schema, from the catalogue (which needs no privilege)."""
        found = conn.execute(
            text(
                "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname = :s AND c.relkind IN ('r', 'p', 'v', 'm', 'f')"
            ),
            {"s": self.schema},
        )
        return {str(name) for (name,) in found}

    def _schema_exists(self, conn: Connection) -> bool:
        found = conn.execute(text("SELECT 1 FROM pg_namespace WHERE nspname = :s"), {"s": self.schema})
        return found.first() is not None

    def _may_create(self, conn: Connection) -> bool:
        if self._schema_exists(conn):
            return bool(
                conn.execute(
                    text("SELECT has_schema_privilege(:s, 'USAGE') AND has_schema_privilege(:s, 'CREATE')"),
                    {"s": self.schema},
                ).scalar()
            )
        return bool(conn.execute(text("SELECT has_database_privilege(current_database(), 'CREATE')")).scalar())

    def _quoted(self) -> str:
        preparer = self.db.engine.dialect.identifier_preparer
        return f"{preparer.quote(self.schema)}.{preparer.quote(TABLE)}"

    def _not_allowed(self, conn: Connection, what: str) -> str:
        """Why the journal is not kept, and the SQL a database owner runs so that it is."""
        preparer = self.db.engine.dialect.identifier_preparer
        role = preparer.quote(str(conn.execute(text("SELECT current_user")).scalar()))
        schema = preparer.quote(self.schema)
        if not self._schema_exists(conn):
            fix = f"CREATE SCHEMA {schema} AUTHORIZATION {role}` (crmsync makes its table in it)"
        elif TABLE not in self._tables(conn):
            fix = f"GRANT USAGE, CREATE ON SCHEMA {schema} TO {role}` (crmsync makes its table in it)"
        else:
            fix = f"GRANT USAGE ON SCHEMA {schema} TO {role}; GRANT SELECT, INSERT ON {self._quoted()} TO {role}`"
        return (
            f"the erasure journal {self.where} is not kept: crmsync's role {role} {what}. Have a database "
            f"owner run `{fix}; until then {_FALLBACK}"
        )


# What an operator does without a journal, as before there was one.
_FALLBACK = (
    "a restore of a dump made before an erasure brings that person back: after every restore, run "
    "`crmsync forget` again for each erasure request answered since the dump was made (docs/operations.md)"
)


def _current_schema(db: Database) -> str:
    """The schema the state's tables are in when its URL names none: the server's for its role
    (as `sync.runtime.state_schema` finds it for the lock and the backup)."""
    with db.engine.connect() as conn:
        return str(conn.execute(text("SELECT current_schema()")).scalar() or "public")
