"""The `crmsync` command (CONTRACTS §1).

Heavy modules are imported inside the commands so that `crmsync --help` starts fast.
"""

from __future__ import annotations

import json
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer

if TYPE_CHECKING:
    from sync.config import LoadedConfig
    from sync.pipeline import CycleReport
    from sync.state import StateStore

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    help="Sync customers between CRMs and web shops: one profile, segments written back everywhere.",
)


class LogLevel(StrEnum):
    debug = "debug"
    info = "info"
    warning = "warning"
    error = "error"


ConfigOpt = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="Config file (default: $CRMSYNC_CONFIG, else ./crmsync.toml)."),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout; logs go to stderr.")]
LevelOpt = Annotated[LogLevel, typer.Option("--log-level", envvar="CRMSYNC_LOG_LEVEL", case_sensitive=False)]
LogJsonOpt = Annotated[bool, typer.Option("--log-json", help="Log JSON lines even on a terminal.")]
AllowPartialOpt = Annotated[
    bool,
    typer.Option(
        "--allow-partial",
        help="Write even though a system has not been read in full (the write gate would hold); for this run only.",
    ),
]


class Common:
    def __init__(self, config: Path | None, as_json: bool, log_level: LogLevel, log_json: bool) -> None:
        self.config = config
        self.as_json = as_json
        self.log_level = log_level.value
        self.log_json = log_json


def _fail(message: str, code: int) -> NoReturn:
    from connectors.redaction import redact_text

    print(redact_text(message), file=sys.stderr, flush=True)
    raise typer.Exit(code)


def _start(common: Common, *, needs_config: bool = True) -> LoadedConfig | None:
    from sync.clock import ClockError, now
    from sync.config import ConfigError, config_path, load_config
    from sync.log import setup_logging

    setup_logging(common.log_level, True if common.log_json else None)
    try:
        now()
    except ClockError as exc:
        _fail(f"crmsync: {exc}", 2)
    if not needs_config:
        return None
    try:
        return load_config(config_path(common.config))
    except ConfigError as exc:
        for line in exc.problems:
            print(line, file=sys.stderr)
        raise typer.Exit(2) from None


def _loaded(common: Common) -> LoadedConfig:
    loaded = _start(common)
    assert loaded is not None
    return loaded


@contextmanager
def _state(loaded: LoadedConfig, command: str) -> Iterator[StateStore]:
    """The state store under the single-writer lock; another holder means exit 5."""
    from sync.lock import LockHeld
    from sync.runtime import open_state

    try:
        with open_state(loaded, command) as store:
            yield store
    except LockHeld as exc:
        _fail(f"crmsync: {exc}", 5)


def _stop_on_signals() -> threading.Event:
    """SIGTERM and SIGINT ask for a clean stop: the current page or batch completes and is recorded.
    A second SIGINT stops at once."""
    stop = threading.Event()

    def handler(signum: int, frame: Any) -> None:
        if stop.is_set() and signum == signal.SIGINT:
            raise KeyboardInterrupt
        stop.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
    return stop


def _fail_json(common: Common, message: str, code: int) -> NoReturn:
    """A refusal: one line on stderr, and with --json the error document on stdout (CONTRACTS §6)."""
    if common.as_json:
        from connectors.redaction import redact_text

        _emit_json({"error": {"exit_code": code, "messages": [redact_text(message)]}})
    _fail(message, code)


def _emit_json(document: Any) -> None:
    from connectors.redaction import redact_value

    sys.stdout.write(json.dumps(redact_value(document, by_name=False), ensure_ascii=False) + "\n")
    sys.stdout.flush()


def _console() -> Any:
    from sync.render import console

    return console()


def _cycle(
    common: Common, command: str, *, dry_run: bool, full: list[str] | None = None, allow_partial: bool = False
) -> CycleReport:
    from sync.clock import now
    from sync.pipeline import Cycle

    loaded = _loaded(common)
    if full is not None:
        unknown = sorted(set(full) - set(loaded.config.systems))
        if unknown:
            _fail(f"crmsync: no system named {', '.join(unknown)} in {loaded.path}", 2)
    with _state(loaded, command) as store:
        stop = _stop_on_signals()
        progress = _progress_bar() if command == "backfill" and not common.as_json else None
        try:
            if progress is not None:
                with progress:
                    return Cycle(loaded, store, clock=now, stop_event=stop, progress=progress).run(
                        command, dry_run=dry_run, full=full or (), allow_partial=allow_partial
                    )
            return Cycle(loaded, store, clock=now, stop_event=stop).run(
                command, dry_run=dry_run, full=full or (), allow_partial=allow_partial
            )
        finally:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            signal.signal(signal.SIGINT, signal.default_int_handler)


def _progress_bar() -> Any:
    from rich.console import Console
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    class RecordProgress(Progress):
        def __init__(self) -> None:
            super().__init__(
                SpinnerColumn(),
                TextColumn("{task.description}"),
                TextColumn("{task.completed:>8.0f} records"),
                TimeElapsedColumn(),
                console=Console(stderr=True),
                transient=False,
            )
            self.tasks_by_key: dict[tuple[str, str], Any] = {}

        def advance(self, system: str, stream: str, records: int) -> None:  # type: ignore[override]
            key = (system, stream)
            if key not in self.tasks_by_key:
                self.tasks_by_key[key] = self.add_task(f"{system} {stream}", total=None)
            self.update(self.tasks_by_key[key], advance=records)

    return RecordProgress()


def _finish(common: Common, report: CycleReport, title: str, *, with_changes: bool = False) -> NoReturn:
    from sync.render import plan_table, print_report

    if common.as_json:
        _emit_json(report.to_json(with_changes=with_changes))
    else:
        console = _console()
        print_report(console, report, title)
        if with_changes:
            console.print(plan_table(report.changes))
        if report.interrupted:
            console.print("[yellow]stopped on request; what was confirmed is recorded[/]")
    raise typer.Exit(report.exit_code())


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
    report = _cycle(common, "sync", dry_run=dry_run, allow_partial=allow_partial)
    _finish(common, report, "sync", with_changes=dry_run and json_out)


@app.command()
def plan(
    config: ConfigOpt = None,
    json_out: JsonOpt = False,
    log_level: LevelOpt = LogLevel.info,
    log_json: LogJsonOpt = False,
) -> None:
    """What `sync` would write, per system and record; nothing is written."""
    common = Common(config, json_out, log_level, log_json)
    _finish(common, _cycle(common, "plan", dry_run=True), "plan", with_changes=True)


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
    loaded = _loaded(common)
    systems = list(system) if system else list(loaded.config.systems)
    _finish(common, _cycle(common, "backfill", dry_run=False, full=systems, allow_partial=allow_partial), "backfill")


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
    _start(common, needs_config=False)
    try:
        types = parse_types(systems)
    except ValueError as exc:
        _fail_json(common, f"crmsync: {exc}", 2)
    if out.exists():
        _fail_json(common, f"crmsync: {out} exists; not overwriting it (choose another --out)", 2)
    starter = render(types)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        with out.open("x", encoding="utf-8") as handle:  # "x": never replace a file made meanwhile
            handle.write(starter.text)
    except OSError as exc:
        _fail_json(common, f"crmsync: cannot write {out}: {exc.strerror or exc}", 2)
    if common.as_json:
        _emit_json({"ok": True, "path": str(out), "systems": types, "environment": starter.environment})
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
    loaded = _loaded(common)
    results = check_all(loaded)
    if common.as_json:
        _emit_json({"systems": results})
    else:
        console = _console()
        console.print(check_table(results))
        for line in check_details(results):
            console.print(line)
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
    from sync.lock import current_holder
    from sync.render import print_status
    from sync.runtime import lock_path
    from sync.state import StateStore

    common = Common(config, json_out, log_level, log_json)
    loaded = _loaded(common)
    path = loaded.sqlite_path()
    holder = current_holder(lock_path(path)) if path is not None else None
    if path is not None and not path.exists():
        systems: dict[str, Any] = {}
        pending: list[dict[str, Any]] = []
        last_run = None
    else:
        store = StateStore(loaded.state_url())
        try:
            systems = store.last_system_runs()
            pending = store.pending_records()
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
        _emit_json({**document, "problems": problems})
        raise typer.Exit(code)
    print_status(_console(), systems, held, pending, holder, problems if last_run is not None else {})
    raise typer.Exit(code)


@app.command()
def backup(
    file: Annotated[Path, typer.Argument(help="Where the copy goes; never overwritten.")],
    config: ConfigOpt = None,
    json_out: JsonOpt = False,
    log_level: LevelOpt = LogLevel.info,
    log_json: LogJsonOpt = False,
) -> None:
    """A consistent copy of the state, safe while a daemon runs (SQLite's online backup)."""
    from sync.backup import BackupError, backup_sqlite

    common = Common(config, json_out, log_level, log_json)
    path = _loaded(common).sqlite_path()
    if path is None:
        _fail_json(common, "crmsync backup: the state is not a SQLite file; use the database's own backup", 2)
    try:
        document = backup_sqlite(path, file.resolve())
    except BackupError as exc:
        _fail_json(common, f"crmsync backup: {exc}", exc.code)
    _emit_json(document) if common.as_json else print(f"backup written: {document['backup']} (integrity ok)")
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
    loaded = _loaded(common)
    path = loaded.sqlite_path()
    if path is not None and not path.exists():
        _fail(f"crmsync: nothing to explain yet: no state at {path} (run a sync first)", 4)
    store = StateStore(loaded.state_url())
    try:
        matches = find_profiles(store, key, loaded.config)
        if not matches:
            _fail(f"crmsync: no profile matches {key!r}", 4)
        document = explain_profile(store, matches[0], loaded.config, now())
        notes = coverage_notes(loaded.config, {record["system"] for record in document["records"]})
        if notes:
            document["caveats"] = list(notes.values())
    finally:
        store.close()
    if len(matches) > 1:
        document["matches"] = matches
    if common.as_json:
        _emit_json(document)
    else:
        _console().print(render(document, matches[1:]))
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
) -> None:
    """Segment health: size, value, stability, overlap, growth and churn per segment."""
    from sync.clock import now
    from sync.config import coverage_notes
    from sync.report import build_report, report_tables
    from sync.report_html import render_html
    from sync.state import StateStore

    common = Common(config, json_out, log_level, log_json)
    loaded = _loaded(common)
    path = loaded.sqlite_path()
    if path is not None and not path.exists():
        _fail(f"crmsync: no state at {path} yet: run `crmsync sync` first", 2)
    store = StateStore(loaded.state_url())  # reads only; no lock needed, as for `status`
    try:
        document = build_report(store, loaded.config.segments, now())
        notes = coverage_notes(loaded.config)
        if notes:
            document["caveats"] = list(notes.values())
    finally:
        store.close()
    if html is not None:
        html.parent.mkdir(parents=True, exist_ok=True)
        html.write_text(render_html(document), encoding="utf-8")
    if common.as_json:
        _emit_json(document)
    else:
        console = _console()
        console.print(report_tables(document))
        if html is not None:
            console.print(f"HTML report: {html.resolve()}")
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
    """The daemon: a cycle on the [schedule], one at a time, until SIGTERM or SIGINT."""
    from sync.scheduler import run_daemon

    common = Common(config, json_out, log_level, log_json)
    loaded = _loaded(common)
    with _state(loaded, "run") as store:
        stop = _stop_on_signals()
        code = run_daemon(
            loaded, store, stop, max_cycles=cycles, logging=(common.log_level, True if common.log_json else None)
        )
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

    _start(Common(config, json_out, log_level, log_json), needs_config=False)
    try:
        fixtures = load_fixture_dir(data) if data is not None else demo_data()
        running = start_sandboxes(fixtures, port_base=port_base, time_scale=time_scale)
    except FixtureError as exc:
        _fail(f"crmsync: bad fixture: {exc}", 2)
    except OSError as exc:
        _fail(f"crmsync: cannot start sandboxes: {exc}", 2)
    try:
        if write_config is not None:
            write_config.parent.mkdir(parents=True, exist_ok=True)
            write_config.write_text(sandbox_config(running))
        for item in running:
            print(f"{item.type} {item.url}", flush=True)
        stop = _stop_on_signals()
        stop.wait()
    finally:
        stop_sandboxes(running)
    raise typer.Exit(0)


@app.command()
def demo(
    config: ConfigOpt = None,
    json_out: JsonOpt = False,
    log_level: LevelOpt = LogLevel.warning,
    log_json: LogJsonOpt = False,
    contacts: Annotated[int, typer.Option("--contacts", min=1, help="Synthetic people to generate.")] = 300,
    folder: Annotated[Path, typer.Option("--dir", help="Where the demo keeps its config and state.")] = Path(
        "crmsync-demo"
    ),
) -> None:
    """Start the sandboxes with synthetic shops, backfill, sync twice, print what happened."""
    from sync.demo_run import run_demo

    common = Common(config, json_out, log_level, log_json)
    _start(common, needs_config=False)
    raise typer.Exit(run_demo(folder, contacts, as_json=common.as_json))


# ----- entry point -------------------------------------------------------------------------------
def main() -> None:
    """Exit codes per CONTRACTS §1 (typer itself exits 2 on usage errors); an unexpected crash
    prints one line naming its log file and exits 70."""
    try:
        app()
    except KeyboardInterrupt:
        print("crmsync: interrupted", file=sys.stderr)
        sys.exit(130)
    except Exception as exc:
        from sync.crash import crash_report

        sys.exit(crash_report(exc))


if __name__ == "__main__":
    main()
