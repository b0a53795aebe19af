"""Many shops on one PostgreSQL server (CONTRACTS §6, issue #16): two deployments in two schemas of
one database, each with its own sandboxes, run side by side without touching each other."""

from __future__ import annotations

import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text

from sync.demo import demo_data
from sync.state import metadata
from tests.kit import Sandboxes, json_out, run_crmsync, spawn, wait_until

# The state tables: every row of each belongs to one deployment.
TABLES = sorted(metadata.tables)
TYPES = ("shopify", "woocommerce", "lightspeed", "afas", "superoffice", "efficy", "silvasoft")


def deployment_config(sandboxes: Sandboxes, folder: Path, database: str, schema: str) -> Path:
    folder.mkdir()
    config = sandboxes.config(folder, state=database)
    lines = config.read_text().split("\n")
    at = next(i for i, line in enumerate(lines) if line.startswith("url = ") and "postgresql" in line)
    lines.insert(at + 1, f'schema = "{schema}"')
    config.write_text("\n".join(lines))
    return config


def schema_rows(database: str, schema: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every state table in `schema`, in a fixed order."""
    engine = create_engine(database)
    try:
        with engine.connect() as conn:
            return {
                table: sorted(map(tuple, conn.execute(text(f'SELECT * FROM "{schema}"."{table}"')).all()), key=repr)
                for table in TABLES
            }
    finally:
        engine.dispose()


def tables_per_schema(database: str) -> dict[str, set[str]]:
    engine = create_engine(database)
    try:
        with engine.connect() as conn:
            found: dict[str, set[str]] = {}
            for schema, table in conn.execute(
                text(
                    "SELECT table_schema, table_name FROM information_schema.tables "
                    "WHERE table_schema NOT IN ('pg_catalog', 'information_schema')"
                )
            ):
                found.setdefault(schema, set()).add(table)
            return found
    finally:
        engine.dispose()


def read_contacts(status: dict[str, Any], system: str) -> int:
    return int(status["systems"][system]["last"]["counts"]["read"]["contacts"])


def test_two_deployments_in_two_schemas_run_side_by_side(
    start_sandboxes_fixture: Callable[..., Sandboxes], postgres_url: str, tmp_path: Path
) -> None:
    data_a, data_b = demo_data(40, seed=7), demo_data(24, seed=11)
    shops_a, shops_b = start_sandboxes_fixture(data_a, time_scale=50), start_sandboxes_fixture(data_b, time_scale=50)
    config_a = deployment_config(shops_a, tmp_path / "a", postgres_url, "shop_a")
    config_b = deployment_config(shops_b, tmp_path / "b", postgres_url, "shop_b")

    # Both first cycles at the same time, on one database.
    first_a, first_b = spawn("sync", "-c", str(config_a), "--json"), spawn("sync", "-c", str(config_b), "--json")
    done_a, done_b = first_a.result(timeout=180), first_b.result(timeout=180)
    assert done_a.returncode == 0, done_a.stderr[-3000:]
    assert done_b.returncode == 0, done_b.stderr[-3000:]
    doc_a, doc_b = json_out(done_a), json_out(done_b)
    assert doc_a["profiles"] == 40 and doc_b["profiles"] == 24
    for doc in (doc_a, doc_b):
        assert all(s["status"] == "ok" and s["written"] == s["planned"] for s in doc["systems"].values())
    # Each deployment's tables (Alembic's version table included) in its own schema, and its erasure
    # journal in a schema beside it (sync/state/erasure_journal_table.py), none elsewhere.
    assert tables_per_schema(postgres_url) == {
        "shop_a": {*TABLES, "alembic_version"},
        "shop_b": {*TABLES, "alembic_version"},
        "shop_a_erasures": {"erasure_journal"},
        "shop_b_erasures": {"erasure_journal"},
    }

    # B syncs again after a change in its own shop: A's state and A's sandboxes are left alone.
    before_a = schema_rows(postgres_url, "shop_a")
    customer = data_b["woocommerce"]["customers"][0]
    shops_b.patch_customer("woocommerce", str(customer["id"]), {"first_name": "Changed"})
    shops_a.reset_stats()
    again_b = run_crmsync("sync", "-c", str(config_b), "--json")
    assert again_b.returncode == 0, again_b.stderr[-3000:]
    assert json_out(again_b)["systems"]["woocommerce"]["read"]["contacts"] >= 1
    assert schema_rows(postgres_url, "shop_a") == before_a
    assert all(
        shops_a.stats(name)["reads"] == shops_a.stats(name)["writes"] == 0 for name in ("shopify", "woocommerce")
    )

    # And the other way round: A's second cycle writes nothing, and leaves B's state as it was.
    before_b = schema_rows(postgres_url, "shop_b")
    again_a = run_crmsync("sync", "-c", str(config_a), "--json")
    assert again_a.returncode == 0, again_a.stderr[-3000:]
    assert all(s["planned"] == 0 for s in json_out(again_a)["systems"].values())
    assert schema_rows(postgres_url, "shop_b") == before_b

    # `status` of each shows its own runs only: A's two cycles of 40 people, B's of 24.
    status_a = json_out(run_crmsync("status", "-c", str(config_a), "--json"))
    status_b = json_out(run_crmsync("status", "-c", str(config_b), "--json"))
    assert read_contacts(status_a, "shopify") == len(data_a["shopify"]["customers"])
    assert read_contacts(status_b, "shopify") == len(data_b["shopify"]["customers"])
    runs_a = [row[2] for row in schema_rows(postgres_url, "shop_a")["runs"]]
    runs_b = [row[2] for row in schema_rows(postgres_url, "shop_b")["runs"]]
    assert sorted(runs_a) == ["sync", "sync"] and sorted(runs_b) == ["sync", "sync"]


def test_plan_beside_a_running_daemon_on_postgresql_reads_its_schema_only_and_writes_nothing(
    sandboxes: Sandboxes, postgres_url: str, tmp_path: Path
) -> None:
    """`plan` while the daemon holds the deployment's lock: it plans from the stored records on a
    read-only session (`default_transaction_read_only`), asks no vendor, and changes no row."""
    config = deployment_config(sandboxes, tmp_path / "shop", postgres_url, "shop")
    daemon = spawn("run", "-c", str(config))  # every 15 minutes: one cycle, then it waits
    try:
        assert wait_until(lambda: '"event": "next cycle at"' in daemon.stderr(), timeout=90), daemon.stderr()[-3000:]
        before = schema_rows(postgres_url, "shop")
        requests_before = {name: sandboxes.stats(name)["requests"] for name in TYPES}
        planned = run_crmsync("plan", "-c", str(config), "--json")
        assert planned.returncode == 0, planned.stderr[-3000:]
        assert schema_rows(postgres_url, "shop") == before
        assert {name: sandboxes.stats(name)["requests"] for name in TYPES} == requests_before
        assert daemon.poll() is None
    finally:
        daemon.send_signal(signal.SIGTERM)
        stopped = daemon.wait(timeout=30)
        daemon.kill()
    assert stopped == 0
    doc = json_out(planned)
    assert doc["from_stored_records"] is True and doc["dry_run"] is True
    assert (doc["lock_holder"]["pid"], doc["lock_holder"]["command"]) == (daemon.pid, "run")
    assert doc["profiles"] == len(before["profiles"]) > 0
    assert doc["changes"] == []  # the daemon's cycle wrote everything the same config plans
