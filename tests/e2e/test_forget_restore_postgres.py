"""A person forgotten stays forgotten when a PostgreSQL deployment is restored from a `crmsync
backup` dump made before the erasure (docs/operations.md "Backup and restore"): the erasure
journal is a table in the sibling schema `<schema>_erasures`, which the dump leaves out and
`pg_restore` leaves alone, written in the erasure's own transaction and replayed by the next
writing command, whichever host runs it. Also: a journal of another salt holds every cycle, a
state with erasures and no journal gets one, and a role that may not create the journal's schema
is told so, and what to do, by every writing command, `forget` and `status`."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from tests.e2e.test_forget import records_of
from tests.e2e.test_forget_restore import marks_of
from tests.e2e.test_postgres_deployments import TABLES, deployment_config
from tests.kit import Sandboxes, json_out, run_crmsync
from tests.postgres import PostgresServer, _tool

SCHEMA = "shop"
JOURNAL = f"{SCHEMA}_erasures.erasure_journal"


def _query(url: str, sql: str) -> list[tuple[Any, ...]]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return [tuple(row) for row in conn.execute(text(sql))]
    finally:
        engine.dispose()


def state_text(url: str, schema: str = SCHEMA) -> str:
    """Every row of every state table in `schema`, as text."""
    return "\n".join(repr(_query(url, f'SELECT * FROM "{schema}"."{table}"')) for table in TABLES).lower()


def journal_rows(url: str, journal: str = JOURNAL) -> list[dict[str, Any]]:
    return [json.loads(line) for (line,) in _query(url, f"SELECT line FROM {journal} ORDER BY seq")]


def most_spread_profile(url: str, having: str, schema: str = SCHEMA) -> str:
    [(profile,)] = _query(
        url,
        f'SELECT profile_id FROM "{schema}".profile_members GROUP BY profile_id '
        f"HAVING sum(CASE WHEN system = '{having}' THEN 1 ELSE 0 END) > 0 "
        "ORDER BY count(DISTINCT system) DESC, profile_id LIMIT 1",
    )
    return str(profile)


def synced_person(sandboxes: Sandboxes, folder: Path, url: str) -> tuple[Path, list[tuple[str, str]], str]:
    config = deployment_config(sandboxes, folder, url, SCHEMA)
    first = run_crmsync("sync", "-c", str(config))
    assert first.returncode == 0, first.stderr[-3000:]
    records, email = records_of(config, most_spread_profile(url, "shopify"))
    assert marks_of(sandboxes, records)  # crmsync's tags and fields there, to erase
    return config, records, email


def listed(dump: Path) -> str:
    return subprocess.run([_tool("pg_restore"), "--list", str(dump)], capture_output=True, text=True, check=True).stdout


def test_a_restored_dump_does_not_bring_a_forgotten_person_back(
    sandboxes: Sandboxes, server: PostgresServer, db: str, postgres_url: str, tmp_path: Path
) -> None:
    config, records, email = synced_person(sandboxes, tmp_path / "host_a", postgres_url)
    dump = tmp_path / "backups" / "shop-before.dump"
    made = run_crmsync("backup", str(dump), "-c", str(config), "--json")
    assert made.returncode == 0, made.stderr[-3000:]
    forgotten = run_crmsync("forget", email, "-c", str(config), "--json")
    assert forgotten.returncode == 0, forgotten.stderr[-3000:]
    erasure = json_out(forgotten)["erasure"]
    assert marks_of(sandboxes, records) == {}
    assert email.lower() not in state_text(postgres_url)

    # Restored as docs/operations.md says, with the service stopped: into the deployment's own
    # database, `--clean --if-exists` (the schema dropped and made again from the dump; without
    # `--clean`, into a schema dropped by hand: tests/unit/test_erasure_journal.py).
    restored = server.restore(dump, db)
    assert restored.returncode == 0, restored.stderr
    assert email.lower() in state_text(postgres_url)  # the dump holds the person again

    # Another host of the same deployment (a standby taking over, a new machine): the journal is
    # the deployment's, in its database, not a file on the host that ran `forget`.
    other_host = deployment_config(sandboxes, tmp_path / "host_b", postgres_url, SCHEMA)
    before_sync = json_out(run_crmsync("status", "-c", str(other_host), "--json")).get("erasure_journal")
    again = run_crmsync("sync", "-c", str(other_host), "--json", timeout=120)
    assert again.returncode == 0, again.stderr[-3000:]
    # The person is not back: `explain` finds no one (exit 4), nothing of theirs in the state, no
    # crmsync tag or field on their records at the vendors.
    assert run_crmsync("explain", email, "-c", str(other_host)).returncode == 4
    assert email.lower() not in state_text(postgres_url)
    assert marks_of(sandboxes, records) == {}
    assert "erasures replayed after a restore" in again.stderr
    assert email.lower() not in again.stderr.lower()

    # `status` said so before the sync, and says what was done after it.
    assert before_sync is not None and before_sync["journal"] == JOURNAL, before_sync
    assert before_sync["to_replay"] == 1 and before_sync["problem"] is None
    status = json_out(run_crmsync("status", "-c", str(config), "--json"))["erasure_journal"]
    assert status["to_replay"] == 0 and status["erasures"] == 1 and status["replayed"]["erasures"] == 1
    assert "erasures replayed after a restore: 1" in run_crmsync("status", "-c", str(config)).stdout
    assert _query(postgres_url, f"SELECT count(*) FROM {SCHEMA}.erasures WHERE erasure_id = '{erasure}'") == [(1,)]

    # The journal: one row, the salted hashes and targets, not the person; not in the dump.
    [line] = journal_rows(postgres_url)
    assert line["erasure"] == erasure and line["hashes"] and line["targets"]
    assert email.lower() not in repr(_query(postgres_url, f"SELECT * FROM {JOURNAL}")).lower()
    assert f"{SCHEMA}_erasures" not in listed(dump) and "erasure_journal" not in listed(dump)

    # And the next cycle neither reads them back nor tags them; a replay adds no second row.
    assert run_crmsync("sync", "-c", str(config)).returncode == 0
    assert run_crmsync("explain", email, "-c", str(config)).returncode == 4
    assert marks_of(sandboxes, records) == {}
    assert len(journal_rows(postgres_url)) == 1


def test_a_journal_of_another_salt_holds_every_cycle(
    sandboxes: Sandboxes, server: PostgresServer, db: str, postgres_url: str, tmp_path: Path
) -> None:
    config, records, email = synced_person(sandboxes, tmp_path / "shop", postgres_url)
    dump = tmp_path / "shop-before.dump"
    assert run_crmsync("backup", str(dump), "-c", str(config)).returncode == 0
    assert run_crmsync("forget", email, "-c", str(config)).returncode == 0
    assert server.restore(dump, db).returncode == 0
    # The dump predates every erasure, so it has no salt: as if it were another state's, it gets one.
    server.psql(f"INSERT INTO {SCHEMA}.meta (key, value) VALUES ('forget_salt', '{'0' * 64}')", database=db)
    sandboxes.reset_stats()
    held = run_crmsync("sync", "-c", str(config), "--json")
    assert held.returncode == 2, held.stderr[-3000:]
    [message] = json_out(held)["error"]["messages"]
    assert JOURNAL in message and "another salt" in message and "ALTER TABLE" in message
    assert marks_of(sandboxes, records) == {}  # no cycle ran: nothing tagged again
    daemon = run_crmsync("run", "--cycles", "1", "-c", str(config), timeout=60)
    assert daemon.returncode == 2 and "another salt" in daemon.stderr
    assert marks_of(sandboxes, records) == {}
    assert run_crmsync("forget", email, "-c", str(config)).returncode == 2  # forget holds too


def test_a_state_with_erasures_and_no_journal_gets_one(
    sandboxes: Sandboxes, server: PostgresServer, db: str, postgres_url: str, tmp_path: Path
) -> None:
    config, _, email = synced_person(sandboxes, tmp_path / "shop", postgres_url)
    forgotten = run_crmsync("forget", email, "-c", str(config), "--json")
    assert forgotten.returncode == 0
    assert json_out(forgotten)["erasure_journal"] == {"journal": JOURNAL, "problem": None}
    server.psql(f"DROP SCHEMA {SCHEMA}_erasures CASCADE", database=db)  # as a crmsync before the journal left it
    hashes = {h for (h,) in _query(postgres_url, f"SELECT key_hash FROM {SCHEMA}.forgotten")}
    [(salt,)] = _query(postgres_url, f"SELECT value FROM {SCHEMA}.meta WHERE key = 'forget_salt'")
    assert run_crmsync("sync", "-c", str(config)).returncode == 0
    [line] = journal_rows(postgres_url)
    assert line["erasure"] == json_out(forgotten)["erasure"]
    assert set(line["hashes"]) == hashes and line["salt"] == salt


def test_a_role_that_may_not_create_the_journals_schema_is_told_what_to_do(
    sandboxes: Sandboxes, server: PostgresServer, db: str, postgres_url: str, tmp_path: Path
) -> None:
    """A DBA gave the role a schema of its own and no CREATE on the database (PostgreSQL grants
    that to no one by default): crmsync cannot make `<schema>_erasures`. Every writing command warns, `forget`
    erases all the same and says the erasure is in no journal, `status` names the SQL that fixes
    it; once a DBA ran it, the next writing command journals the state's erasures."""
    role = f"r_{db}"[:63]  # roles are the server's, shared by every test's database
    server.psql(f"CREATE ROLE {role} LOGIN; GRANT CONNECT ON DATABASE {db} TO {role}")
    server.psql(f"CREATE SCHEMA {role} AUTHORIZATION {role}", database=db)
    url = str(make_url(postgres_url).set(username=role).render_as_string(hide_password=False))
    config = sandboxes.config(tmp_path, state=url)  # no `schema`: the role's own
    first = run_crmsync("sync", "-c", str(config))
    assert first.returncode == 0, first.stderr[-3000:]
    assert "no erasure journal" in first.stderr and f"CREATE SCHEMA {role}_erasures AUTHORIZATION {role}" in (
        first.stderr
    )
    status = json_out(run_crmsync("status", "-c", str(config), "--json"))["erasure_journal"]
    assert status["journal"] == f"{role}_erasures.erasure_journal" and status["problem"]
    assert f"CREATE SCHEMA {role}_erasures AUTHORIZATION {role}" in status["problem"]
    assert "no erasure journal" in run_crmsync("status", "-c", str(config)).stdout

    records, email = records_of(config, most_spread_profile(url, "shopify", role))
    forgotten = run_crmsync("forget", email, "-c", str(config), "--json")
    assert forgotten.returncode == 0, forgotten.stderr[-3000:]
    document = json_out(forgotten)
    assert document["erasure_journal"]["problem"] and marks_of(sandboxes, records) == {}
    assert run_crmsync("explain", email, "-c", str(config)).returncode == 4  # erased all the same

    server.psql(f"CREATE SCHEMA {role}_erasures AUTHORIZATION {role}", database=db)  # the DBA's fix
    again = run_crmsync("sync", "-c", str(config))
    assert again.returncode == 0 and "no erasure journal" not in again.stderr
    [line] = journal_rows(postgres_url, f"{role}_erasures.erasure_journal")
    assert line["erasure"] == document["erasure"]
    status = json_out(run_crmsync("status", "-c", str(config), "--json"))["erasure_journal"]
    assert status["problem"] is None and status["erasures"] == 1
