"""CONTRACTS §6, "`--json` and signals, per command": every command's document on success, the
error document on exit 2, 5 and 70, what SIGINT does to each; dry runs recorded as dry runs; `plan`
beside a running daemon (from the stored records, nothing written); progress bars that end with
their stream."""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from sync.lock import StateLock
from sync.sandboxes import start_sandboxes, stop_sandboxes
from tests.e2e.test_interruptions import final_state
from tests.kit import Sandboxes, json_out, run_crmsync, run_crmsync_here, spawn, wait_until

SYSTEM_TYPES = {"shopify", "woocommerce", "lightspeed", "afas", "superoffice", "efficy", "silvasoft"}
SYNC_KEYS = {"run_id", "dry_run", "started_at", "finished_at", "profiles", "quarantined", "systems", "held"}
OUTCOME_KEYS = {"type", "status", "error", "read", "quarantined", "planned", "written", "rejected", "write_calls"}
QUADRANT_TAGS = {"crmsync:friends", "crmsync:supporters", "crmsync:acquaintances", "crmsync:passers-by"}
Result = subprocess.CompletedProcess[str]


# ----- the deployment the table runs against ----------------------------------------------------
@dataclass
class Deployment:
    sandboxes: Sandboxes
    data: dict[str, Any]
    config: Path  # synced once, healthy
    broken: Path  # a config error
    junk: Path  # a state file that is no database
    fresh: Path  # a config whose state does not exist yet
    lock: Path  # the lock file of `config`'s state


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory, small_data: dict[str, Any]) -> Iterator[Deployment]:
    running = start_sandboxes(small_data, time_scale=50)
    try:
        sandboxes = Sandboxes(running)
        base = tmp_path_factory.mktemp("deployment")
        for name in ("synced", "junk", "fresh"):
            (base / name).mkdir()
        config = sandboxes.config(base / "synced")
        assert run_crmsync("sync", "-c", str(config)).returncode == 0
        (base / "junk" / "crmsync.db").write_text("this is no database, just text\n" * 20)
        broken = base / "broken.toml"
        broken.write_text('[systems.shop]\ntype = "shopify"\nbase_url = "https://x.myshopify.com"\n')
        yield Deployment(
            sandboxes,
            small_data,
            config,
            broken,
            sandboxes.config(base / "junk"),
            sandboxes.config(base / "fresh"),
            base / "synced" / "crmsync.db.lock",
        )
    finally:
        stop_sandboxes(running)


# ----- what each document must hold --------------------------------------------------------------
Check = Callable[[Result, Deployment], None]


def sync_document(doc: dict[str, Any], *, dry_run: bool = False) -> None:
    assert doc.keys() >= SYNC_KEYS
    assert doc["dry_run"] is dry_run and doc["held"] is None
    assert set(doc["systems"]) == SYSTEM_TYPES
    for name, outcome in doc["systems"].items():
        assert outcome.keys() >= OUTCOME_KEYS, name
        assert outcome["type"] == name and outcome["status"] == "ok" and outcome["error"] is None
        assert set(outcome["read"]) == {"contacts", "orders"}


def synced(result: Result, d: Deployment) -> None:
    sync_document(json_out(result))


def planned(result: Result, d: Deployment) -> None:
    doc = json_out(result)
    sync_document(doc, dry_run=True)
    assert doc["changes"] == [] and doc["from_stored_records"] is False and doc["lock_holder"] is None
    # The systems were read (WooCommerce's customers have no modified filter: read whole each time).
    assert doc["systems"]["woocommerce"]["read"]["contacts"] == len(d.data["woocommerce"]["customers"])


def backfilled(result: Result, d: Deployment) -> None:
    doc = json_out(result)
    sync_document(doc)
    for name, outcome in doc["systems"].items():  # everything read again, from the start
        assert outcome["read"]["contacts"] == len(d.data[name]["customers"]), name


def demonstrated(result: Result, d: Deployment) -> None:
    doc = json_out(result)
    sync_document(doc)
    assert doc["profiles"] == 20
    assert all(outcome["write_calls"] == 0 for outcome in doc["second"]["systems"].values())


def checked(result: Result, d: Deployment) -> None:
    doc = json_out(result)
    assert set(doc) == {"systems"} and set(doc["systems"]) == SYSTEM_TYPES
    for name, system in doc["systems"].items():
        assert (system["type"], system["reachable"], system["auth"], system["error"]) == (name, True, "ok", None)
        assert set(system["capabilities"]) == {
            "read_contacts",
            "read_orders",
            "incremental",
            "write_tags",
            "write_fields",
        }
        assert isinstance(system["permissions"], list)


def status_ok(result: Result, d: Deployment) -> None:
    doc = json_out(result)
    assert {"systems", "lock"} <= doc.keys() and doc["lock"] is None
    assert set(doc["systems"]) == SYSTEM_TYPES
    assert all(entry["last"]["status"] == "ok" for entry in doc["systems"].values())


def status_no_state(result: Result, d: Deployment) -> None:
    doc = json_out(result)
    assert {"systems", "lock"} <= doc.keys() and doc["systems"] == {} and doc["last_run"] is None


def explained(result: Result, d: Deployment) -> None:
    doc = json_out(result)
    assert {"profile_id", "aliases", "records", "links", "fields", "traits", "segments"} <= doc.keys()
    email = d.data["woocommerce"]["customers"][0]["email"]
    assert doc["fields"]["email"]["value"] == email
    assert any(record["system"] == "woocommerce" for record in doc["records"])


def reported(result: Result, d: Deployment) -> None:
    doc = json_out(result)
    assert doc["segments"] and set(doc["quarantine"]) == {"by_reason", "by_system"}
    assert {"name", "size", "share", "revenue_share", "stability", "max_overlap", "growth", "flags"} <= set(
        doc["segments"][0]
    )


def forgotten(result: Result, d: Deployment) -> None:
    doc = json_out(result)
    assert doc["ok"] is True and doc["pending"] == [] and len(doc["profiles"]) == 1 and doc["erasure"]
    assert sum(doc["records"]["contacts"].values()) >= 1
    assert run_crmsync("explain", _forgettable(d), "-c", str(d.config)).returncode == 4


def measured(result: Result, d: Deployment) -> None:
    doc = json_out(result)
    assert {"segment", "since", "until", "tagged", "holdout", "previous_window", "lift"} <= doc.keys()
    assert doc["tagged"]["people"] > 0 and doc["holdout"]["people"] == 0  # no holdout configured
    assert set(doc["tagged"]) == {"people", "orders", "revenue", "conversion"}


def initialised(result: Result, d: Deployment) -> None:
    doc = json_out(result)
    assert doc["ok"] is True and doc["systems"] == ["shopify"] and Path(doc["path"]).is_file()


def backed_up(result: Result, d: Deployment) -> None:
    doc = json_out(result)
    assert doc["ok"] is True and doc["integrity"] == "ok" and Path(doc["backup"]).stat().st_size == doc["bytes"]


def nothing_to_back_up(result: Result, d: Deployment) -> None:
    doc = json_out(result)  # exit 4 of a command in the `{"ok": …}` row: its own document
    assert doc["ok"] is False and doc["backup"] is None and "nothing to back up" in doc["message"]


def migrated_nothing(result: Result, d: Deployment) -> None:
    doc = json_out(result)  # the state is at this crmsync's schema already
    assert doc["ok"] is True and doc["applied"] == [] and doc["backup"] is None and doc["from"] == doc["to"]


def nothing_to_migrate(result: Result, d: Deployment) -> None:
    doc = json_out(result)
    assert doc["ok"] is False and doc["from"] is None and "no state yet" in doc["message"]


def demo_refused(result: Result, d: Deployment) -> None:
    error(5, f"pid {os.getpid()}")(result, d)
    assert d.lock.with_name("crmsync.db").stat().st_size > 0  # not cleared for a demo


def ran_one_cycle(result: Result, d: Deployment) -> None:
    assert json_out(result) == {"cycles": 1, "stopped_by": None}


def error(code: int, expected: str) -> Check:
    def check(result: Result, d: Deployment) -> None:
        doc = json_out(result)
        assert doc == {"error": {"exit_code": code, "messages": doc["error"]["messages"]}}
        messages = doc["error"]["messages"]
        assert messages and all(isinstance(m, str) and m for m in messages)
        assert any(expected in m for m in messages), messages
        assert all(m in result.stderr for m in messages)  # the same lines as on stderr

    return check


def no_json(expected: str) -> Check:
    def check(result: Result, d: Deployment) -> None:
        assert result.stdout == ""
        assert expected in result.stderr

    return check


# ----- the table: command -> case -> how it runs and what it must give ----------------------------
@dataclass(frozen=True)
class Case:
    args: Callable[[Deployment, Path], list[str]]
    code: int
    check: Check
    here: bool = False  # a quick refusal: run in this process (the same entry point)
    holding_lock: bool = False  # the test holds the state's writer lock meanwhile
    json: bool = True


def _config_error(command: str, *rest: str) -> Case:
    return Case(lambda d, t: [command, *rest, "-c", str(d.broken)], 2, error(2, "config error: systems.shop."), True)


def _lock_held(command: str, *rest: str) -> Case:
    return Case(lambda d, t: [command, *rest, "-c", str(d.config)], 5, error(5, f"pid {os.getpid()}"), True, True)


def _crash(command: str, *rest: str) -> Case:
    return Case(lambda d, t: [command, *rest, "-c", str(d.junk)], 70, error(70, "internal error"), True)


def _refusals(command: str, *rest: str, lock: bool = True) -> dict[str, Case]:
    cases = {"config error": _config_error(command, *rest), "crash": _crash(command, *rest)}
    return cases | ({"lock held": _lock_held(command, *rest)} if lock else {})


def _email(d: Deployment) -> str:
    return str(d.data["woocommerce"]["customers"][0]["email"])


def _forgettable(d: Deployment) -> str:
    """A person `forget` may erase: not the one the `explain` row looks up."""
    taken = _email(d).lower()
    return next(
        str(c["email"]) for c in reversed(d.data["woocommerce"]["customers"]) if str(c["email"]).lower() != taken
    )


# Add a row here with each new command: its success and its refusals.
TABLE: dict[str, dict[str, Case]] = {
    "sync": {"ok": Case(lambda d, t: ["sync", "-c", str(d.config)], 0, synced), **_refusals("sync")},
    # `plan` with the lock held plans from the stored records: test_plan_beside_a_running_daemon...
    "plan": {"ok": Case(lambda d, t: ["plan", "-c", str(d.config)], 0, planned), **_refusals("plan", lock=False)},
    "backfill": {"ok": Case(lambda d, t: ["backfill", "-c", str(d.config)], 0, backfilled), **_refusals("backfill")},
    "demo": {
        "ok": Case(lambda d, t: ["demo", "--contacts", "20", "--dir", str(t / "demo")], 0, demonstrated),
        "usage error": Case(lambda d, t: ["demo", "--contacts", "0"], 2, error(2, "--contacts"), True),
        "crash": Case(lambda d, t: ["demo", "--dir", str(d.broken)], 70, error(70, "internal error"), True),
        # a running crmsync's folder: its state is left alone
        "lock held": Case(lambda d, t: ["demo", "--dir", str(d.lock.parent)], 5, demo_refused, True, True),
    },
    "check": {
        "ok": Case(lambda d, t: ["check", "-c", str(d.config)], 0, checked),
        "config error": _config_error("check"),
    },
    "status": {
        "ok": Case(lambda d, t: ["status", "-c", str(d.config)], 0, status_ok),
        "no state": Case(lambda d, t: ["status", "-c", str(d.fresh)], 4, status_no_state, True),
        **_refusals("status", lock=False),
    },
    "explain": {
        "ok": Case(lambda d, t: ["explain", _email(d), "-c", str(d.config)], 0, explained),
        "nothing found": Case(
            lambda d, t: ["explain", "nobody@example.invalid", "-c", str(d.config)], 4, error(4, "no profile"), True
        ),
        **_refusals("explain", "someone@example.invalid", lock=False),
    },
    "forget": {
        "ok": Case(lambda d, t: ["forget", _forgettable(d), "-c", str(d.config)], 0, forgotten),
        "nothing found": Case(
            lambda d, t: ["forget", "nobody@example.invalid", "-c", str(d.config)], 4, error(4, "no profile"), True
        ),
        "no state": Case(lambda d, t: ["forget", "a@b.nl", "-c", str(d.fresh)], 4, error(4, "no state"), True),
        **_refusals("forget", "someone@example.invalid"),
    },
    "report": {
        "ok": Case(lambda d, t: ["report", "-c", str(d.config)], 0, reported),
        "campaign": Case(
            lambda d, t: ["report", "--campaign", "friends", "--since", "2020-01-01", "-c", str(d.config)], 0, measured
        ),
        "unknown segment": Case(
            lambda d, t: ["report", "--members", "nope", "-c", str(d.config)], 2, error(2, "no segment named"), True
        ),
        "no state": Case(lambda d, t: ["report", "-c", str(d.fresh)], 2, error(2, "no state"), True),
        **_refusals("report", lock=False),
    },
    "init": {
        "ok": Case(lambda d, t: ["init", "--systems", "shopify", "--out", str(t / "new.toml")], 0, initialised),
        "exists": Case(lambda d, t: ["init", "--out", str(d.config)], 2, error(2, "not overwriting"), True),
    },
    "backup": {
        "ok": Case(lambda d, t: ["backup", str(t / "copy.db"), "-c", str(d.config)], 0, backed_up),
        "exists": Case(
            lambda d, t: ["backup", str(d.config), "-c", str(d.config)], 2, error(2, "never overwrites"), True
        ),
        "no state": Case(lambda d, t: ["backup", str(t / "b.db"), "-c", str(d.fresh)], 4, nothing_to_back_up, True),
        **_refusals("backup", "elsewhere.db", lock=False),
    },
    "migrate": {
        "ok": Case(lambda d, t: ["migrate", "-c", str(d.config)], 0, migrated_nothing),
        "no state": Case(lambda d, t: ["migrate", "-c", str(d.fresh)], 4, nothing_to_migrate, True),
        **_refusals("migrate"),
    },
    "run": {
        "ok": Case(lambda d, t: ["run", "--cycles", "1", "-c", str(d.config)], 0, ran_one_cycle),
        **_refusals("run"),
    },
    "sandbox": {
        # Never JSON (its §5 lines, see test_sandbox_...); a refusal is a line on stderr.
        "bad fixture": Case(
            lambda d, t: ["sandbox", "--data", str(_bad_fixture(t))], 2, no_json("customers.json item 0"), json=False
        ),
    },
}


def _bad_fixture(folder: Path) -> Path:
    (folder / "fixtures" / "woocommerce").mkdir(parents=True)
    (folder / "fixtures" / "woocommerce" / "customers.json").write_text('[{"id": "seven"}]')
    return folder / "fixtures"


@contextmanager
def _holding(lock: Path, held: bool) -> Iterator[None]:
    if not held:
        yield
        return
    holder = StateLock(lock)
    holder.acquire("test")
    try:
        yield
    finally:
        holder.release()


@pytest.mark.parametrize(
    ("command", "case"), [(command, case) for command, cases in TABLE.items() for case in cases], ids=str
)
def test_every_command_gives_its_json_document_and_exit_code(
    deployment: Deployment, tmp_path: Path, command: str, case: str
) -> None:
    row = TABLE[command][case]
    args = [*row.args(deployment, tmp_path), "--json"]
    with _holding(deployment.lock, row.holding_lock):
        result = run_crmsync_here(*args) if row.here else run_crmsync(*args, timeout=120)
    assert result.returncode == row.code, (result.stdout, result.stderr)
    if row.json:
        assert result.stdout.count("\n") == 1 and result.stdout.endswith("\n")  # one document, one line
    assert "Traceback" not in result.stderr
    row.check(result, deployment)


# ----- signals -----------------------------------------------------------------------------------
def list_reads(sandboxes: Sandboxes, system_type: str, path: str) -> int:
    """Answered GETs of one list (its pages)."""
    return sum(
        1
        for e in sandboxes.request_log(system_type)
        if e["method"] == "GET" and e["path"] == path and e["status"] == 200
    )


def woo_customer_pages(sandboxes: Sandboxes) -> int:
    return list_reads(sandboxes, "woocommerce", "/wp-json/wc/v3/customers")


def checkpoint(state: Path, system: str, stream: str) -> dict[str, Any] | None:
    with closing(sqlite3.connect(state)) as db:
        row = db.execute("SELECT value FROM checkpoints WHERE system = ? AND stream = ?", (system, stream)).fetchone()
    return json.loads(row[0]) if row else None


SPINNER = re.compile("[\u2800-\u28ff]")  # rich's spinner frames (braille dots)
SMALL_PAGES = {"woocommerce": "page_size = 2"}  # 8 customers: 4 pages, with the vendor's page total


def test_sigint_during_backfill_exits_130_and_a_rerun_resumes_from_the_checkpoint(
    start_sandboxes_fixture: Callable[..., Sandboxes], small_data: dict[str, Any], tmp_path: Path
) -> None:
    reference = start_sandboxes_fixture(small_data, time_scale=50)
    (tmp_path / "ref").mkdir()
    clean = run_crmsync("backfill", "-c", str(reference.config(tmp_path / "ref", **SMALL_PAGES)), "--json")
    assert clean.returncode == 0, clean.stderr
    whole_list = woo_customer_pages(reference)
    assert whole_list >= 4

    victim = start_sandboxes_fixture(small_data, time_scale=50)
    (tmp_path / "victim").mkdir()
    config = victim.config(tmp_path / "victim", **SMALL_PAGES)
    victim.fault("woocommerce", match="GET /wp-json/wc/v3/customers", fault="slow", seconds=0.5, times=100)
    wide = {"COLUMNS": "200"}  # the progress lines unwrapped
    process = spawn("backfill", "-c", str(config), env=wide)
    try:
        assert wait_until(lambda: woo_customer_pages(victim) >= 2, timeout=60), process.stderr()
        process.send_signal(signal.SIGINT)
        stopped = process.result(timeout=60)
    finally:
        process.kill()
    assert stopped.returncode == 130, stopped.stderr
    assert "stopped on request" in stopped.stdout
    # The bars ended with their streams: no spinner left, the stopped stream marked so, with the
    # vendor's page total (X-WP-TotalPages).
    bars = [line for line in stopped.stderr.splitlines() if re.match(r"^[✓✗] \w+ (contacts|orders)", line)]
    assert bars and not any(SPINNER.search(line) for line in bars)
    assert re.search(r"^✗ woocommerce contacts .*page [1-4]/4", stopped.stderr, re.M), bars
    assert any(line.startswith("✓ ") for line in bars)
    state = tmp_path / "victim" / "crmsync.db"
    resume_at = checkpoint(state, "woocommerce", "contacts@backfill")
    assert resume_at is not None and resume_at["pass"]["at"] > 1  # stored where it stood
    assert all(not writes for writes in (victim.stats(t)["writes"] for t in ("shopify", "woocommerce")))

    for sandbox in victim.running:
        requests.delete(f"{sandbox.url}/_sandbox/faults", timeout=5).raise_for_status()
    victim.reset_stats()
    rerun = run_crmsync("backfill", "-c", str(config), env=wide)
    assert rerun.returncode == 0, rerun.stderr
    # Read on from the checkpoint's page, not from the first page.
    assert woo_customer_pages(victim) == whole_list - (resume_at["pass"]["at"] - 1)
    assert re.search(r"^✓ woocommerce contacts .*100%.*page 4/4", rerun.stderr, re.M), rerun.stderr
    assert checkpoint(state, "woocommerce", "contacts@backfill") is None
    assert final_state(victim, small_data) == final_state(reference, small_data)


def _in_flight(sandboxes: Sandboxes, system_type: str) -> bool:
    return any(e["status"] is None for e in sandboxes.request_log(system_type))


@pytest.mark.parametrize("command", ["sync", "plan", "check"])
def test_sigint_exits_130(sandboxes: Sandboxes, tmp_path: Path, command: str) -> None:
    config = sandboxes.config(tmp_path)
    sandboxes.fault("shopify", match="reads", fault="slow", seconds=2, times=1)
    process = spawn(command, "-c", str(config), "--json")
    try:
        assert wait_until(lambda: _in_flight(sandboxes, "shopify"), timeout=30), process.stderr()
        process.send_signal(signal.SIGINT)
        result = process.result(timeout=30)
    finally:
        process.kill()
    assert result.returncode == 130, result.stderr
    if command == "check":
        assert result.stdout == ""  # nothing was found out in full: no document
        return
    doc = json_out(result)  # what the cycle did until it stopped, as for SIGTERM, and who stopped it
    assert doc["stopped_by"] == "SIGINT"
    assert doc["systems"]["shopify"]["status"] == "interrupted"
    assert all(outcome["written"] == 0 for outcome in doc["systems"].values())
    with closing(sqlite3.connect(tmp_path / "crmsync.db")) as db:
        assert db.execute("SELECT status FROM runs").fetchall() == [("interrupted",)]


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_the_daemon_stops_on_sigint_as_on_sigterm_and_says_which(
    sandboxes: Sandboxes, tmp_path: Path, signum: signal.Signals
) -> None:
    config = sandboxes.config(tmp_path)  # every 15 minutes: one cycle, then it waits
    daemon = spawn("run", "-c", str(config), "--json")
    try:
        assert wait_until(lambda: '"event": "cycle finished"' in daemon.stderr(), timeout=60), daemon.stderr()
        daemon.send_signal(signum)
        result = daemon.result(timeout=30)
    finally:
        daemon.kill()
    assert result.returncode == 0, result.stderr
    assert json_out(result) == {"cycles": 1, "stopped_by": signum.name}


def test_sandbox_prints_its_lines_never_json_and_sigint_exits_0(tmp_path: Path) -> None:
    from connectors.registry import PORT_OFFSETS

    process = spawn("sandbox", "--json")
    try:
        assert wait_until(lambda: len(process.stdout().splitlines()) == len(PORT_OFFSETS), timeout=60)
        process.send_signal(signal.SIGINT)
        result = process.result(timeout=30)
    finally:
        process.kill()
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert {line.split()[0] for line in lines} == set(PORT_OFFSETS)
    assert all(re.fullmatch(r"[a-z]+ http://127\.0\.0\.1:\d+", line) for line in lines)


# ----- dry runs ----------------------------------------------------------------------------------
def test_a_dry_run_is_recorded_as_dry_and_is_never_the_last_successful_cycle(
    sandboxes: Sandboxes, tmp_path: Path
) -> None:
    config = sandboxes.config(tmp_path)
    real = run_crmsync("sync", "-c", str(config), "--json")
    assert real.returncode == 0, real.stderr
    dry = run_crmsync("sync", "--dry-run", "-c", str(config), "--json")
    assert dry.returncode == 0 and json_out(dry)["dry_run"] is True
    status = run_crmsync("status", "-c", str(config), "--json")
    assert status.returncode == 0, status.stderr
    for name, entry in json_out(status)["systems"].items():
        assert entry["last"]["command"] == "sync" and entry["last"]["dry_run"] is False, name
        assert entry["last_ok"] == entry["last"]
        assert entry["last_dry_run"]["command"] == "sync --dry-run" and entry["last_dry_run"]["dry_run"] is True
        assert entry["last_dry_run"]["finished_at"] > entry["last_ok"]["finished_at"]
    assert json_out(status)["last_run"]["command"] == "sync --dry-run"
    human = run_crmsync("status", "-c", str(config), env={"COLUMNS": "300"})
    assert "dry run since the last cycle, nothing written: sync --dry-run" in human.stdout

    # A state that has seen only dry runs (a plan is one) has no successful cycle at all.
    (tmp_path / "dry").mkdir()
    only_dry = sandboxes.config(tmp_path / "dry")
    assert run_crmsync("sync", "--dry-run", "-c", str(only_dry)).returncode == 0
    assert run_crmsync("plan", "-c", str(only_dry)).returncode == 0
    never = run_crmsync("status", "-c", str(only_dry), "--json")
    assert never.returncode == 3
    doc = json_out(never)
    assert set(doc["problems"]) == set(doc["systems"]) == SYSTEM_TYPES
    for entry in doc["systems"].values():
        assert entry["last"] is None and entry["last_ok"] is None
        assert entry["last_dry_run"]["command"] == "plan"
    with closing(sqlite3.connect(tmp_path / "dry" / "crmsync.db")) as db:
        assert db.execute("SELECT command FROM runs ORDER BY seq").fetchall() == [("sync --dry-run",), ("plan",)]


# ----- plan beside the daemon --------------------------------------------------------------------
def state_rows(state: Path) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table, read without writing."""
    with closing(sqlite3.connect(f"file:{state}?mode=ro", uri=True)) as db:
        tables = [row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]
        return {table: sorted(db.execute(f"SELECT * FROM {table}").fetchall(), key=repr) for table in tables}


def settled(state: Path) -> dict[str, list[tuple[Any, ...]]]:
    """The state's rows once three reads half a second apart agree."""
    seen = [state_rows(state)]

    def quiet() -> bool:
        seen.append(state_rows(state))
        return seen[-1] == seen[-2] == seen[-3] if len(seen) >= 3 else False

    assert wait_until(quiet, timeout=30, interval=0.5)
    return seen[-1]


def test_plan_beside_a_running_daemon_plans_from_stored_records_and_writes_nothing(
    sandboxes: Sandboxes, small_data: dict[str, Any], tmp_path: Path
) -> None:
    config = sandboxes.config(tmp_path)  # every 15 minutes: one cycle, then the daemon waits
    state = tmp_path / "crmsync.db"
    # A plan that differs from what the daemon wrote: everyone in a new segment (so every stored
    # profile's verdict changes, which a cycle would save), and the shop without the quadrants.
    (tmp_path / "other").mkdir()
    skip = '["friends", "supporters", "acquaintances", "passers-by", "plan-probe"]'
    other = sandboxes.config(
        tmp_path / "other",
        extra='[[segments.rules]]\nname = "plan-probe"\nwhen = "order_count >= 0"\n',
        state=f"sqlite:///{state}",
        shopify=f"skip_segments = {skip}",
    )
    daemon = spawn("run", "-c", str(config))
    try:
        # After its cycle the daemon stores its alert memory, then logs when the next cycle starts.
        assert wait_until(lambda: '"event": "next cycle at"' in daemon.stderr(), timeout=60), daemon.stderr()
        before = settled(state)
        requests_before = {t: sandboxes.stats(t)["requests"] for t in SYSTEM_TYPES}
        result = run_crmsync("plan", "-c", str(other), "--json")
        assert result.returncode == 0, result.stderr
        assert state_rows(state) == before  # nothing written to the state
        assert {t: sandboxes.stats(t)["requests"] for t in SYSTEM_TYPES} == requests_before  # no vendor asked
        assert daemon.poll() is None
        assert json_out(run_crmsync("status", "-c", str(config), "--json"))["lock"]["pid"] == daemon.pid
    finally:
        daemon.send_signal(signal.SIGTERM)
        stopped = daemon.wait(timeout=30)
        daemon.kill()
    assert stopped == 0
    assert "planning from the stored records, without reading the systems" in result.stderr
    doc = json_out(result)
    assert doc["from_stored_records"] is True
    assert (doc["lock_holder"]["pid"], doc["lock_holder"]["command"]) == (daemon.pid, "run")
    assert doc["dry_run"] is True and doc["profiles"] == 40
    assert all(outcome["read"] == {"contacts": 0, "orders": 0} for outcome in doc["systems"].values())
    # Every shop customer that carries a quadrant tag loses it, and nothing else changes.
    tagged = {
        c["id"]
        for c in (sandboxes.customer("shopify", x["id"]) for x in small_data["shopify"]["customers"])
        if QUADRANT_TAGS & set(c["tags"])
    }
    shop = [change for change in doc["changes"] if change["system"] == "shopify"]
    assert tagged and {change["id"] for change in shop} == tagged
    for change in shop:
        assert change["add_tags"] == [] and change["set_fields"] == {}
        assert len(change["remove_tags"]) == 1 and change["remove_tags"][0] in QUADRANT_TAGS
    # Everyone joins the new segment elsewhere: WooCommerce holds the segments in a field.
    woo = {change["id"]: change["set_fields"] for change in doc["changes"] if change["system"] == "woocommerce"}
    assert set(woo) == {str(c["id"]) for c in small_data["woocommerce"]["customers"]}
    assert all("plan-probe" in fields["crmsync_segments"].split(",") for fields in woo.values())

    # With the daemon gone the plan reads the systems, and plans the same changes.
    fresh = run_crmsync("plan", "-c", str(other), "--json")
    assert fresh.returncode == 0, fresh.stderr
    fresh_doc = json_out(fresh)
    assert fresh_doc["from_stored_records"] is False and fresh_doc["lock_holder"] is None
    assert sorted(map(str, fresh_doc["changes"])) == sorted(map(str, doc["changes"]))
