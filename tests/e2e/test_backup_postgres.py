"""`crmsync backup` on PostgreSQL: a `pg_dump` of the deployment's schema in custom format that
restores into an empty database; without `pg_dump`, exit 2 naming the server's own backup."""

from __future__ import annotations

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
