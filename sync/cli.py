"""The `crmsync` command (CONTRACTS §1 and §6).

Heavy modules are imported inside the commands so that `crmsync --help` starts fast. What the
commands share (options, the JSON and error documents, the lock, signals, the entry point's exit
codes) is in sync/cli_support.py; the body of the cycle commands in sync/cli_cycle.py.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from sync.cli_cycle import finish_cycle, plan_from_stored_records, run_cycle
from sync.cli_support import (
    AllowPartialOpt,
    Common,
    ConfigOpt,
    JsonOpt,
    LevelOpt,
    LogJsonOpt,
    LogLevel,
    console,
    dry_run_lines,
    emit_json,
    erasure_lines,
    fail,
    journal_lines,
    loaded_config,
    restore_signals,
    run_app,
    start,
    stop_on_signals,
    writer_state,
)

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    help="Sync customers between CRMs and web shops: one profile, segments written back everywhere.",
)


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        print(f"crmsync {version('crmsync')}")
        raise typer.Exit(0)


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """Sync customers between CRMs and web shops: one profile, segments written back everywhere."""


# ----- commands ----------------------------------------------------------------------------------
@app.command()
def sync(
    config: ConfigOpt = None,
    json_out: JsonOpt = False,
    log_level: LevelOpt = LogLevel.info,
    log_json: LogJsonOpt = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Stop after planning; write nothing.")] = False,
    allow_partial: AllowPartialOpt = False,
) -> None:
    """One incremental cycle: read what changed, recompute, write back."""
    common = Common(config, json_out, log_level, log_json)
    report, stopped_by = run_cycle(common, loaded_config(common), "sync", dry_run=dry_run, allow_partial=allow_partial)
    finish_cycle(common, report, "sync", with_changes=dry_run, stopped_by=stopped_by)


@app.command()
def plan(
    config: ConfigOpt = None,
    json_out: JsonOpt = False,
    log_level: LevelOpt = LogLevel.info,
    log_json: LogJsonOpt = False,
) -> None:
    """What `sync` would write, per system and record; nothing is written. While another process
    (the daemon) holds the state, the plan is made from the stored records without reading the
    systems, and says so."""
    from sync.lock import LockHeld

    common = Common(config, json_out, log_level, log_json)
    loaded = loaded_config(common)
    holder = None
    try:
        report, stopped_by = run_cycle(common, loaded, "plan", dry_run=True, lock_held_raises=True)
    except LockHeld as held:
        holder = held.holder
        report, stopped_by = plan_from_stored_records(loaded, held)
    extra = {"from_stored_records": holder is not None, "lock_holder": holder}
    title = "plan from the stored records (the systems were not read)" if holder is not None else "plan"
    finish_cycle(common, report, title, with_changes=True, stopped_by=stopped_by, extra=extra)


@app.command()
def backfill(
    config: ConfigOpt = None,
    json_out: JsonOpt = False,
    log_level: LevelOpt = LogLevel.info,
    log_json: LogJsonOpt = False,
    system: Annotated[list[str] | None, typer.Option("--system", help="Only re-read this system (repeatable).")] = None,
    allow_partial: AllowPartialOpt = False,
) -> None:
    """Re-read everything (resumable, with progress), then run one cycle."""
    common = Common(config, json_out, log_level, log_json)
    loaded = loaded_config(common)
    systems = list(system) if system else list(loaded.config.systems)
    report, stopped_by = run_cycle(common, loaded, "backfill", dry_run=False, full=systems, allow_partial=allow_partial)
    finish_cycle(common, report, "backfill", stopped_by=stopped_by)


@app.command()
def init(
    config: ConfigOpt = None,
    json_out: JsonOpt = False,
    log_level: LevelOpt = LogLevel.info,
    log_json: LogJsonOpt = False,
    systems: Annotated[
        str | None, typer.Option("--systems", help="System types, comma-separated (default: all seven).")
    ] = None,
    out: Annotated[Path, typer.Option("--out", help="Where to write the config (never overwritten).")] = Path(
        "crmsync.toml"
    ),
) -> None:
    """Write a minimal commented config for these systems; secrets go in environment variables."""
    from sync.starter import parse_types, render

    common = Common(config, json_out, log_level, log_json)
    start(common, needs_config=False)
    try:
        types = parse_types(systems)
    except ValueError as exc:
        fail(f"crmsync: {exc}", 2)
    if out.exists():
        fail(f"crmsync: {out} exists; not overwriting it (choose another --out)", 2)
    starter = render(types)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        with out.open("x", encoding="utf-8") as handle:  # "x": never replace a file made meanwhile
            handle.write(starter.text)
    except OSError as exc:
        fail(f"crmsync: cannot write {out}: {exc.strerror or exc}", 2)
    if common.as_json:
        emit_json({"ok": True, "path": str(out), "systems": types, "environment": starter.environment})
    else:
        print(f"wrote {out} for {', '.join(types)}")
        print("fill in every REPLACE_ME in it, and set these environment variables (the secrets):")
        for variable in starter.environment:
            print(f"  {variable}")
        print(f"then: crmsync check -c {out}")
    raise typer.Exit(0)


@app.command()
def check(
    config: ConfigOpt = None,
    json_out: JsonOpt = False,
    log_level: LevelOpt = LogLevel.info,
    log_json: LogJsonOpt = False,
) -> None:
    """Validate the config and prove, with calls that change nothing, what every system allows:
    credentials, the scopes, rights and fields the configured work needs, and what follows from them."""
    from sync.checking import check_all, check_failed
    from sync.render import check_details, check_table

    common = Common(config, json_out, log_level, log_json)
    loaded = loaded_config(common)
    results = check_all(loaded)
    if common.as_json:
        emit_json({"systems": results})
    else:
        out = console()
        out.print(check_table(results))
        for line in check_details(results):
            out.print(line)
    raise typer.Exit(3 if any(check_failed(r) for r in results.values()) else 0)


@app.command()
def status(
    config: ConfigOpt = None,
    json_out: JsonOpt = False,
    log_level: LevelOpt = LogLevel.info,
    log_json: LogJsonOpt = False,
) -> None:
    """Last cycle per system, records waiting to be retried, and who holds the state lock. Exits 0
    when every system's last cycle succeeded, 3 when one did not, 4 when there is no state yet."""
    from sync import health
    from sync.clock import now
    from sync.render import print_status
    from sync.runtime import lock_holder
    from sync.state import StateStore
    from sync.state.erasure_replay import journal_status
    from sync.timefmt import times_for_json

    common = Common(config, json_out, log_level, log_json)
    loaded = loaded_config(common)
    path = loaded.sqlite_path()
    holder = lock_holder(loaded)
    if path is not None and not path.exists():
        systems: dict[str, Any] = {}
        pending: list[dict[str, Any]] = []
        erasures: list[dict[str, Any]] = []
        journal = None
        last_run = None
    else:
        store = StateStore(loaded.state_url())
        try:
            systems = store.last_system_runs()
            pending = store.pending_records()
            erasures = store.erasures.pending_erasures()
            journal = journal_status(store.erasures)
            last_run = store.last_run()
        finally:
            store.close()
    held = None
    if last_run is not None:
        summary = json.loads(last_run["summary"]) if last_run.get("summary") else {}
        held = summary.get("held")
        last_run = {k: v for k, v in last_run.items() if k != "summary"}
    staleness = loaded.config.writeback.max_staleness
    problems = health.problems(loaded.config.systems, systems, now=now(), max_staleness=staleness)
    code = health.exit_code(last_run is not None, problems)
    if common.as_json:
        document = {"systems": systems, "pending": pending, "lock": holder, "last_run": last_run, "held": held}
        document = {**document, "problems": problems, "erasures": erasures, "erasure_journal": journal}
        emit_json(times_for_json(document))
        raise typer.Exit(code)
    out = console()
    print_status(out, systems, held, pending, holder, problems if last_run is not None else {})
    for line in [*dry_run_lines(systems), *erasure_lines(erasures), *journal_lines(journal)]:
        out.print(line)
    raise typer.Exit(code)


@app.command()
def backup(
    file: Annotated[Path, typer.Argument(help="Where the copy goes; never overwritten.")],
    config: ConfigOpt = None,
    json_out: JsonOpt = False,
    log_level: LevelOpt = LogLevel.info,
    log_json: LogJsonOpt = False,
) -> None:
    """A consistent copy of the state, safe while a daemon runs: SQLite's online backup, or on
    PostgreSQL a `pg_dump` of the deployment's schema (custom format)."""
    from sync.backup import BackupError, backup_postgres, backup_sqlite
    from sync.runtime import state_schema

    common = Common(config, json_out, log_level, log_json)
    loaded = loaded_config(common)
    path = loaded.sqlite_path()
    try:
        if path is not None:
            document = backup_sqlite(path, file.resolve())
        elif loaded.state_url().startswith("postgresql"):
            document = backup_postgres(loaded.state_url(), file.resolve(), state_schema(loaded) or "public")
        else:
            fail("crmsync backup: this state is not a file or a PostgreSQL database; nothing to copy", 2)
    except BackupError as exc:
        if exc.code in (2, 5, 70):
            fail(f"crmsync backup: {exc}", exc.code)
        # Nothing to back up (4): the command's own document, as for every exit but 2, 5 and 70.
        print(f"crmsync backup: {exc}", file=sys.stderr)
        if common.as_json:
            emit_json({"ok": False, "backup": None, "message": str(exc)})
        raise typer.Exit(exc.code) from None
    emit_json(document) if common.as_json else print(f"backup written: {document['backup']} (checked)")
    raise typer.Exit(0)


@app.command()
def forget(
    key: Annotated[
        str | None, typer.Argument(help="As for explain: an email, a phone, a profile id, or <system>:<id>.")
    ] = None,
    config: ConfigOpt = None,
    json_out: JsonOpt = False,
    log_level: LevelOpt = LogLevel.info,
    log_json: LogJsonOpt = False,
    abandon: Annotated[
        str | None, typer.Option("--abandon", help="An erasure id (from status): stop trying to clear it.")
    ] = None,
    system: Annotated[str | None, typer.Option("--system", help="With --abandon: only at this system.")] = None,
) -> None:
    """Forget a person: crmsync's tags and fields off their records in every system, their data out
    of the state, and their records never stored again (a record made after this is new). A system
    that cannot be reached now is tried again by every sync; `status` lists it until it is done.
    `--abandon ERASURE` gives up on a pending one (the vendor deleted the record, or the system is gone)."""
    import threading

    from sync.clock import now
    from sync.forget import Ambiguous, NoSuchPerson, render
    from sync.forget import forget as forget_person
    from sync.state.erasure import StaleProfiles

    common = Common(config, json_out, log_level, log_json)
    if (key is None) == (abandon is None):
        fail("crmsync forget: give a KEY, or --abandon ERASURE (not both)", 2)
    loaded = loaded_config(common)
    path = loaded.sqlite_path()
    if path is not None and not path.exists():
        fail(f"crmsync: nothing to forget: no state at {path}", 4)
    with writer_state(loaded, "forget") as writer:
        if abandon is not None:
            dropped = writer.store.erasures.abandon(abandon, system, now())
            if dropped is None:
                fail(f"crmsync: no pending erasure {abandon}" + (f" at {system}" if system is not None else ""), 4)
            document = {"ok": True, "erasure": abandon, "abandoned": dropped}
            given_up = ", ".join(f"{name} ({n} record{'s' if n != 1 else ''})" for name, n in sorted(dropped.items()))
            emit_json(document) if common.as_json else print(f"erasure {abandon}: stopped trying at {given_up}")
            raise typer.Exit(0)
        try:
            done = forget_person(loaded, writer, str(key), threading.Event())
        except NoSuchPerson as exc:
            fail(f"crmsync: {exc}", 4)
        except (Ambiguous, StaleProfiles) as exc:
            fail(f"crmsync: {exc}", 2)
    emit_json(done.document) if common.as_json else print(render(done.document))
    raise typer.Exit(0 if done.complete else 3)


@app.command()
def migrate(
    config: ConfigOpt = None,
    json_out: JsonOpt = False,
    log_level: LevelOpt = LogLevel.info,
    log_json: LogJsonOpt = False,
) -> None:
    """Upgrade the state's schema in place, under the writer lock, after a backup beside it. Every
    writing command does this by itself at start; this is for doing it at a time of your choosing."""
    from sync.lock import LockHeld
    from sync.runtime import migrate_locked

    common = Common(config, json_out, log_level, log_json)
    loaded = loaded_config(common)
    try:
        document = migrate_locked(loaded)
    except LockHeld as exc:
        fail(f"crmsync: {exc}", 5)
    if document.get("from") is None:
        message = "no state yet: nothing to migrate (the first sync creates it at the current schema)"
        print(f"crmsync migrate: {message}", file=sys.stderr)
        if common.as_json:
            emit_json({**document, "ok": False, "message": message})
        raise typer.Exit(4)
    if common.as_json:
        emit_json(document)
    elif document["applied"]:
        print(f"state migrated from schema {document['from']} to {document['to']}; backup: {document['backup']}")
    else:
        print(f"state already at schema {document['to']}: nothing to do")
    raise typer.Exit(0)


@app.command()
def explain(
    key: Annotated[str, typer.Argument(help="An email, a phone number, a profile id, or <system>:<id>.")],
    config: ConfigOpt = None,
    json_out: JsonOpt = False,
    log_level: LevelOpt = LogLevel.info,
    log_json: LogJsonOpt = False,
) -> None:
    """One profile and why: its records, what joined them, which source won each field, segments."""
    from sync.clock import now
    from sync.config import coverage_notes
    from sync.explain import explain_profile, find_profiles, render
    from sync.state import StateStore

    common = Common(config, json_out, log_level, log_json)
    loaded = loaded_config(common)
    path = loaded.sqlite_path()
    if path is not None and not path.exists():
        fail(f"crmsync: nothing to explain yet: no state at {path} (run a sync first)", 4)
    store = StateStore(loaded.state_url())
    try:
        matches = find_profiles(store, key, loaded.config)
        if not matches:
            fail(f"crmsync: no profile matches {key!r}", 4)
        document = explain_profile(store, matches[0], loaded.config, now())
        notes = coverage_notes(loaded.config, {record["system"] for record in document["records"]})
        if notes:
            document["caveats"] = [*document.get("caveats", []), *notes.values()]
    finally:
        store.close()
    if len(matches) > 1:
        document["matches"] = matches
    if common.as_json:
        emit_json(document)
    else:
        console().print(render(document, matches[1:]))
    raise typer.Exit(0)


@app.command()
def report(
    config: ConfigOpt = None,
    json_out: JsonOpt = False,
    log_level: LevelOpt = LogLevel.info,
    log_json: LogJsonOpt = False,
    html: Annotated[
        Path | None, typer.Option("--html", help="Also write the report as one self-contained HTML file.")
    ] = None,
    campaign: Annotated[
        str | None,
        typer.Option("--campaign", help="A segment: its tagged people vs its holdout, and before."),
    ] = None,
    since: Annotated[str | None, typer.Option("--since", help="With --campaign: when it started (YYYY-MM-DD).")] = None,
    members: Annotated[
        str | None, typer.Option("--members", help="A segment: its members now (the holdout left out).")
    ] = None,
    as_csv: Annotated[bool, typer.Option("--csv", help="With --members: CSV on stdout.")] = False,
) -> None:
    """Segment health: size, value, stability, overlap, growth and churn per segment. --campaign
    measures a campaign on a segment; --members lists a segment's people for a mail tool."""
    from sync.cli_report import campaign_view, members_view
    from sync.clock import now
    from sync.config import coverage_notes
    from sync.report import build_report, report_tables
    from sync.report_guide import add_guide
    from sync.report_html import render_html
    from sync.state import StateStore

    common = Common(config, json_out, log_level, log_json)
    loaded = loaded_config(common)
    path = loaded.sqlite_path()
    if path is not None and not path.exists():
        fail(f"crmsync: no state at {path} yet: run `crmsync sync` first", 2)
    if as_csv and members is None:
        fail("crmsync report: --csv goes with --members SEGMENT", 2)
    if campaign is not None:
        campaign_view(common, loaded, campaign, since)
    if members is not None:
        members_view(common, loaded, members, as_csv)
    store = StateStore(loaded.state_url())  # reads only; no lock needed, as for `status`
    try:
        document = build_report(store, loaded.config.segments, now(), loaded.config.report.language)
        add_guide(document, store, loaded)
        notes = coverage_notes(loaded.config)
        if notes:
            document["caveats"] = list(notes.values())
    finally:
        store.close()
    if html is not None:
        html.parent.mkdir(parents=True, exist_ok=True)
        html.write_text(render_html(document), encoding="utf-8")
    if common.as_json:
        emit_json(document)
    else:
        out = console()
        out.print(report_tables(document))
        if html is not None:
            out.print(f"HTML report: {html.resolve()}")
    raise typer.Exit(0)


@app.command()
def run(
    config: ConfigOpt = None,
    json_out: JsonOpt = False,
    log_level: LevelOpt = LogLevel.info,
    log_json: LogJsonOpt = False,
    cycles: Annotated[
        int | None, typer.Option("--cycles", min=1, help="Stop after this many cycles (default: run until stopped).")
    ] = None,
) -> None:
    """The daemon: a cycle on the [schedule], one at a time, until SIGTERM or SIGINT. On PostgreSQL
    a second daemon of the same deployment waits as a standby and takes over when the active one
    dies (or loses its database session); on SQLite it exits 5 as every second writer does."""
    from sync.config import ConfigError
    from sync.runtime import StandbyStopped, is_postgres
    from sync.scheduler import run_daemon

    common = Common(config, json_out, log_level, log_json)
    loaded = loaded_config(common)
    stop = stop_on_signals()  # a standby stopped while it waits exits 0 as well
    standby = stop if is_postgres(loaded) else None
    code, finished = 0, 0
    try:
        while not stop.is_set() and (cycles is None or finished < cycles):
            with writer_state(loaded, "run", standby=standby) as writer:
                end = run_daemon(
                    loaded,
                    writer.store,
                    stop,
                    max_cycles=None if cycles is None else cycles - finished,
                    logging=(common.log_level, True if common.log_json else None),
                    lock=writer.lock,
                )
            code, finished = end.code, finished + end.cycles
            if not end.lock_lost:
                break
            print("crmsync: lock lost: back to standby", file=sys.stderr, flush=True)
    except StandbyStopped:
        pass
    except ConfigError as exc:  # the [service] address cannot be listened on
        fail(exc.problems, 2)
    finally:
        restore_signals()
    if common.as_json:
        # SIGINT stops the daemon as SIGTERM does (exit 0); the document names the signal it got.
        emit_json({"cycles": finished, "stopped_by": stop.signal})
    raise typer.Exit(code)


@app.command()
def sandbox(
    config: ConfigOpt = None,
    json_out: JsonOpt = False,
    log_level: LevelOpt = LogLevel.info,
    log_json: LogJsonOpt = False,
    data: Annotated[
        Path | None, typer.Option("--data", help="Fixtures: DIR/<type>/customers.json and orders.json.")
    ] = None,
    port_base: Annotated[
        int | None, typer.Option("--port-base", help="Ports P+0 shopify, P+1 woocommerce, ...")
    ] = None,
    write_config: Annotated[
        Path | None, typer.Option("--write-config", help="Write a working crmsync config for these sandboxes.")
    ] = None,
    time_scale: Annotated[float, typer.Option("--time-scale", min=0.001, help="Divide rate-limit windows by X.")] = 1.0,
) -> None:
    """Run the vendor emulators on 127.0.0.1 until SIGINT or SIGTERM."""
    from connectors.sandbox import FixtureError
    from sync.demo import demo_data
    from sync.sandboxes import load_fixture_dir, sandbox_config, start_sandboxes, stop_sandboxes

    # Never JSON: the §5 lines, and errors as a line on stderr (CONTRACTS §6).
    start(Common(config, json_out, log_level, log_json, json_errors=False), needs_config=False)
    stop = stop_on_signals()  # also while the emulators start: they stop once they have (exit 0)
    try:
        try:
            fixtures = load_fixture_dir(data) if data is not None else demo_data()
            running = start_sandboxes(fixtures, port_base=port_base, time_scale=time_scale)
        except FixtureError as exc:
            fail(f"crmsync: bad fixture: {exc}", 2)
        except OSError as exc:
            fail(f"crmsync: cannot start sandboxes: {exc}", 2)
        try:
            if write_config is not None:
                write_config.parent.mkdir(parents=True, exist_ok=True)
                write_config.write_text(sandbox_config(running))
            for item in running:
                print(f"{item.type} {item.url}", flush=True)
            stop.wait()
        finally:
            stop_sandboxes(running)
    finally:
        restore_signals()
    raise typer.Exit(0)


@app.command()
def demo(
    config: ConfigOpt = None,
    json_out: JsonOpt = False,
    log_level: LevelOpt = LogLevel.info,  # CONTRACTS §1, as every command; `make demo` asks for warning
    log_json: LogJsonOpt = False,
    contacts: Annotated[int, typer.Option("--contacts", min=1, help="Synthetic people to generate.")] = 300,
    folder: Annotated[Path, typer.Option("--dir", help="Where the demo keeps its config and state.")] = Path(
        "crmsync-demo"
    ),
) -> None:
    """Start the sandboxes with synthetic shops, backfill, sync twice, print what happened."""
    from sync.demo_run import run_demo
    from sync.lock import LockHeld

    common = Common(config, json_out, log_level, log_json)
    start(common, needs_config=False)
    try:
        code = run_demo(folder, contacts, as_json=common.as_json)
    except LockHeld as exc:
        fail(f"crmsync: {exc}", 5)
    raise typer.Exit(code)


# ----- entry point -------------------------------------------------------------------------------
def main() -> None:
    """Exit codes per CONTRACTS §1 and §6 (sync/cli_support.py `run_app`)."""
    sys.exit(run_app(app))


if __name__ == "__main__":
    main()
