"""`crmsync backup` on PostgreSQL: a `pg_dump` of the deployment's schema in custom format that
restores into an empty database; without `pg_dump`, exit 2 naming the server's own backup."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

from tests.kit import json_out, run_crmsync, secret
from tests.postgres import PostgresServer, _tool


def _config(folder: Path, url: str, schema: str | None = None) -> Path:
    path = folder / "crmsync.toml"
    in_schema = f'schema = "{schema}"\n' if schema else ""
    path.write_text(
        f'[state]\nurl = "{url}"\n{in_schema}\n[systems.shop]\ntype = "shopify"\nbase_url = "http://127.0.0.1:9"\n'
        f'access_token = "{secret("shpat_for_a_backup_only_0001")}"\n'
    )
    return path


def test_backup_dumps_the_schema_and_the_dump_restores(server: PostgresServer, db: str, tmp_path: Path) -> None:
    server.psql(
        "CREATE TABLE profiles (profile_id text primary key, created_seq int);"
        "INSERT INTO profiles SELECT 'p' || g, g FROM generate_series(1, 250) g;",
        database=db,
    )
    config = _config(tmp_path, server.url(db))
    target = tmp_path / "backups" / "state.dump"
    made = run_crmsync("backup", str(target), "-c", str(config), "--json")
    assert made.returncode == 0, made.stderr
    document = json_out(made)
    assert document["ok"] is True and document["format"] == "pg_dump custom" and target.stat().st_size > 0
    assert stat.S_IMODE(target.stat().st_mode) == 0o600  # every customer's data: its owner's alone
    assert not target.with_name(target.name + ".partial").exists()

    again = run_crmsync("backup", str(target), "-c", str(config), "--json")
    assert again.returncode == 2 and "never overwrites" in json_out(again)["error"]["messages"][0]

    into = f"{db}_restored"  # another empty database, the test's own too
    server.psql(f"CREATE DATABASE {into}")
    try:
        restored = subprocess.run(
            [
                _tool("pg_restore"),
                "-h",
                "127.0.0.1",
                "-p",
                str(server.port),
                "-U",
                "postgres",
                "-d",
                into,
                "--clean",  # as docs/operations.md says: the empty database has its own `public`
                "--if-exists",
                str(target),
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert restored.returncode == 0, restored.stderr
        assert server.psql("SELECT count(*), max(created_seq) FROM profiles", database=into) == "250|250"
    finally:
        server.psql(f"DROP DATABASE IF EXISTS {into} WITH (FORCE)")


def test_backup_dumps_the_deployments_own_schema_only(server: PostgresServer, db: str, tmp_path: Path) -> None:
    for schema in ("shop_a", "shop_b"):
        server.psql(f"CREATE SCHEMA {schema}; CREATE TABLE {schema}.profiles_{schema} (id int);", database=db)
    target = tmp_path / "shop_b.dump"
    made = run_crmsync("backup", str(target), "-c", str(_config(tmp_path, server.url(db), "shop_b")), "--json")
    assert made.returncode == 0, made.stderr
    assert json_out(made)["schema"] == "shop_b"
    listed = subprocess.run([_tool("pg_restore"), "--list", str(target)], capture_output=True, text=True, check=True)
    assert "profiles_shop_b" in listed.stdout and "profiles_shop_a" not in listed.stdout


def test_without_pg_dump_backup_exits_2_and_names_the_servers_own_backup(
    server: PostgresServer, db: str, tmp_path: Path
) -> None:
    config = _config(tmp_path, server.url(db))
    bare = tmp_path / "bin"
    bare.mkdir()
    made = run_crmsync("backup", str(tmp_path / "x.dump"), "-c", str(config), env={"PATH": str(bare)})
    assert made.returncode == 2
    assert "pg_dump is not installed" in made.stderr and "server's own backup" in made.stderr
    assert not (tmp_path / "x.dump").exists()


def test_without_a_schema_named_the_deployment_is_the_schema_the_server_gives_its_role(
    server: PostgresServer, db: str, tmp_path: Path
) -> None:
    """A DBA who gives each role a schema of its own (PostgreSQL 15 lets ordinary roles create
    nothing in `public`): crmsync's tables go where the role's search path puts them, and its backup,
    its lock and the backup before an upgrade must be of that schema, not of an empty `public`."""
    from sync.config import load_config
    from sync.runtime import advisory_lock, state_schema

    role = f"r_{db}"[:63]  # roles are the server's, shared by every test's database
    server.psql(f"CREATE ROLE {role} LOGIN; GRANT CONNECT ON DATABASE {db} TO {role}")
    server.psql(f"CREATE SCHEMA {role} AUTHORIZATION {role}", database=db)
    server.psql(f"SET ROLE {role}; CREATE TABLE profiles (profile_id text primary key)", database=db)
    url = server.url(db).replace(f"//{server.user}@", f"//{role}@")
    config = _config(tmp_path, url)
    target = tmp_path / "own.dump"
    made = run_crmsync("backup", str(target), "-c", str(config), "--json")
    assert made.returncode == 0, made.stderr
    assert json_out(made)["schema"] == role
    listed = subprocess.run([_tool("pg_restore"), "--list", str(target)], capture_output=True, text=True, check=True)
    assert f"TABLE {role} profiles" in listed.stdout
    loaded = load_config(config)
    assert state_schema(loaded) == role and f"schema {role}" in advisory_lock(loaded).where


def test_backup_connects_as_the_urls_query_says(server: PostgresServer, db: str, tmp_path: Path) -> None:
    """`?host=...&port=...` (a socket folder, a port) reach pg_dump as they reach crmsync's own
    connections: without them it dumped whatever listened on 127.0.0.1:5432, or failed."""
    server.psql("CREATE TABLE profiles (profile_id text primary key)", database=db)
    url = f"postgresql+psycopg://{server.user}@/{db}?host=127.0.0.1&port={server.port}"
    made = run_crmsync("backup", str(tmp_path / "q.dump"), "-c", str(_config(tmp_path, url)), "--json")
    assert made.returncode == 0, made.stderr
    assert json_out(made)["schema"] == "public"


def test_an_upgrade_without_its_backup_is_refused_and_the_backup_goes_to_backup_dir(
    server: PostgresServer, db: str, tmp_path: Path
) -> None:
    """The dump made before an upgrade went into the config's folder, read-only under the shipped
    systemd unit: the daemon exited 70 with an OSError (the removal of the partial file hid
    pg_dump's own error) at every restart. Now: exit 2 naming `[state] backup_dir`, nothing
    upgraded, and with the setting the dump lands there, its owner's alone."""

    from sync.migrate import pending_migration
    from sync.state.migrations import migration_engine, upgrade

    url = server.url(db)
    engine = migration_engine(url)
    try:
        with engine.begin() as conn:
            upgrade(conn, None, "12")
    finally:
        engine.dispose()
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    config = _config(tmp_path, url)
    base = config.read_text()
    config.write_text(base.replace("[state]\n", f'[state]\nbackup_dir = "{blocker}/dumps"\n'))
    refused = run_crmsync("migrate", "-c", str(config), "--json")
    assert refused.returncode == 2, refused.stderr
    [message] = json_out(refused)["error"]["messages"]
    assert "could not be made, so the state was not upgraded" in message and "backup_dir" in message
    assert pending_migration(url) == ("12", "13")
    config.write_text(base.replace("[state]\n", '[state]\nbackup_dir = "dumps"\n'))  # the config's folder's
    (tmp_path / "dumps").mkdir()
    fake = tmp_path / "bin"  # a pg_dump that cannot dump this server: exit 2 too, saying why
    fake.mkdir()
    (fake / "pg_dump").write_text("#!/bin/sh\necho 'pg_dump: error: server version mismatch' >&2\nexit 1\n")
    (fake / "pg_dump").chmod(0o755)
    failed = run_crmsync("migrate", "-c", str(config), "--json", env={"PATH": f"{fake}:{os.environ['PATH']}"})
    assert failed.returncode == 2, failed.stderr
    [message] = json_out(failed)["error"]["messages"]
    assert "server version mismatch" in message and "backup_dir" not in message
    assert pending_migration(url) == ("12", "13") and not list((tmp_path / "dumps").iterdir())
    done = run_crmsync("migrate", "-c", str(config), "--json")
    assert done.returncode == 0, done.stderr
    [dump] = (tmp_path / "dumps").glob("*.pre-migrate-12-*.dump")
    assert json_out(done)["backup"] == str(dump) and stat.S_IMODE(dump.stat().st_mode) == 0o600
    assert pending_migration(url) is None
