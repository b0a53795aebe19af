"""What every command in sync/cli.py shares: the common options, what goes to stdout with `--json`
(one document; on exit 2, 5 and 70 the error document, CONTRACTS §6), the writer lock, the signals
that stop a cycle, and the entry point that turns every way out into an exit code.

Heavy modules are imported inside the functions so that `crmsync --help` starts fast.
"""

from __future__ import annotations

import io
import json
import signal
import sys
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, redirect_stderr
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer

if TYPE_CHECKING:
    from sync.config import LoadedConfig
    from sync.runtime import Writer

INTERRUPTED = 130  # SIGINT (Ctrl-C), as shells report it


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


class _Output:
    """What this invocation promised on stdout: whether `--json` holds (a command says so by making
    its `Common`; before that, the arguments tell) and whether the one document is out already."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.decided: bool | None = None
        self.emitted = False

    def wants_json(self, args: Sequence[str]) -> bool:
        if self.decided is not None:
            return self.decided
        # A usage error comes before any command runs. `sandbox` prints lines, never JSON.
        command = next((a for a in args if not a.startswith("-")), "")
        return "--json" in args and command != "sandbox"


OUTPUT = _Output()


class Common:
    """The options every command takes. `json_errors=False` for a command whose output is never
    JSON (`sandbox`: its §5 lines; its errors are a line on stderr)."""

    def __init__(
        self, config: Path | None, as_json: bool, log_level: LogLevel, log_json: bool, *, json_errors: bool = True
    ) -> None:
        self.config = config
        self.as_json = as_json
        self.log_level = log_level.value
        self.log_json = log_json
        OUTPUT.decided = as_json and json_errors


def error_document(code: int, messages: Sequence[str]) -> dict[str, Any]:
    return {"error": {"exit_code": code, "messages": list(messages)}}


def emit_json(document: Any) -> None:
    from connectors.redaction import redact_value

    sys.stdout.write(json.dumps(redact_value(document, by_name=False), ensure_ascii=False) + "\n")
    sys.stdout.flush()
    OUTPUT.emitted = True


def fail(messages: str | Sequence[str], code: int) -> NoReturn:
    """A refusal: a line per message on stderr and, with `--json`, the error document on stdout."""
    from connectors.redaction import redact_text

    lines = [redact_text(line) for line in ([messages] if isinstance(messages, str) else messages)]
    for line in lines:
        print(line, file=sys.stderr, flush=True)
    if OUTPUT.decided and not OUTPUT.emitted:
        emit_json(error_document(code, lines))
    raise typer.Exit(code)


def start(common: Common, *, needs_config: bool = True) -> LoadedConfig | None:
    from sync.clock import ClockError, now
    from sync.config import ConfigError, config_path, load_config
    from sync.log import setup_logging

    setup_logging(common.log_level, True if common.log_json else None)
    try:
        now()
    except ClockError as exc:
        fail(f"crmsync: {exc}", 2)
    if not needs_config:
        return None
    try:
        return load_config(config_path(common.config))
    except ConfigError as exc:
        fail(exc.problems, 2)


def loaded_config(common: Common) -> LoadedConfig:
    loaded = start(common)
    assert loaded is not None
    return loaded


@contextmanager
def writer_state(
    loaded: LoadedConfig,
    command: str,
    *,
    lock_held_raises: bool = False,
    standby: threading.Event | None = None,
) -> Iterator[Writer]:
    """The state store under the single-writer lock; another holder means exit 5 (or, with
    `lock_held_raises`, LockHeld for the caller to handle, as `plan` does; or, with `standby`, the
    daemon on PostgreSQL, a wait for the lock: sync/runtime.py). A lock lost on the way (its
    PostgreSQL session gone) stops the writes and exits 5 too: another process may hold it now."""
    from sync.lock import LockHeld, LockLost
    from sync.runtime import open_writer
    from sync.state.erasure_replay import JournalMismatch

    try:
        with open_writer(loaded, command, standby=standby) as writer:
            yield writer
    except LockHeld as exc:
        if lock_held_raises:
            raise
        fail(f"crmsync: {exc}", 5)
    except LockLost as exc:
        fail(f"crmsync: {exc}", 5)
    except JournalMismatch as exc:
        fail(f"crmsync: {exc}", 2)


class StopRequest(threading.Event):
    """Set by SIGTERM or SIGINT; `signal` names the first one ("SIGINT"), None until then."""

    signal: str | None = None


def stop_on_signals() -> StopRequest:
    """SIGTERM and SIGINT ask for a clean stop: the current page or batch completes and is recorded.
    A second SIGINT stops at once. `restore_signals` puts the defaults back."""
    stop = StopRequest()

    def handler(signum: int, frame: Any) -> None:
        if stop.is_set() and signum == signal.SIGINT:
            raise KeyboardInterrupt
        if stop.signal is None:
            stop.signal = signal.Signals(signum).name
        stop.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
    return stop


def restore_signals() -> None:
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)


def console() -> Any:
    from sync.render import console as make

    return make()


def dry_run_lines(systems: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """`status` for people: the dry runs since each system's last cycle (they are no cycle)."""
    from sync.timefmt import for_people

    since: dict[tuple[str, str], list[str]] = {}
    for name, entry in systems.items():
        dry, last = entry.get("last_dry_run"), entry.get("last")
        if dry and (last is None or dry["finished_at"] > last["finished_at"]):
            since.setdefault((dry["command"], dry["finished_at"]), []).append(name)
    return [
        f"dry run since the last cycle, nothing written: {command} at {for_people(finished)} ({', '.join(names)})"
        for (command, finished), names in since.items()
    ]


def journal_lines(journal: Mapping[str, Any] | None) -> list[str]:
    """`status` for people: what the erasure journal says of a restored state."""
    from sync.timefmt import for_people

    if journal is None:
        return []
    lines = []
    if journal.get("problem"):
        lines.append(f"no erasure journal: {journal['problem']}")
    if journal["to_replay"]:
        n = journal["to_replay"]
        lines.append(
            f"erasure journal: {n} erasure{'s' if n != 1 else ''} this state lacks (restored from an older "
            "copy?): the next sync, backfill, forget or daemon start erases those people again"
        )
    replayed = journal.get("replayed")
    if replayed:
        n = replayed["erasures"]
        lines.append(
            f"erasures replayed after a restore: {n} at {for_people(replayed['at'])} "
            f"({journal['erasures']} in the journal)"
        )
    return lines


def erasure_lines(erasures: Sequence[Mapping[str, Any]]) -> list[str]:
    """`status` for people: erasures (`crmsync forget`) some system has not confirmed yet."""
    from sync.timefmt import for_people

    lines = []
    for erasure in erasures:
        waiting = erasure["waiting_for"]
        parts = [
            f"{name} ({entry['records']} record{'s' if entry['records'] != 1 else ''}"
            + (f": {entry['last_error']}" if entry.get("last_error") else "")
            + ")"
            for name, entry in sorted(waiting.items())
        ]
        lines.append(
            f"erasure {erasure['erasure']} of {for_people(erasure['requested_at'])} pending at "
            + (", ".join(parts) or "no system")
            + f"; every sync tries again (`crmsync forget --abandon {erasure['erasure']}` to give up)"
        )
    return lines


def run_app(app: typer.Typer, args: Sequence[str] | None = None) -> int:
    """Runs the command line and returns its exit code (CONTRACTS §1 and §6): typer's usage errors
    exit 2, Ctrl-C 130, an unexpected crash prints one line naming its log file and exits 70;
    with `--json`, each of these leaves the error document on stdout unless a document is out."""
    from typer._click.exceptions import ClickException

    argv = list(sys.argv[1:] if args is None else args)
    OUTPUT.reset()  # (the tests run commands in-process, one after another)
    try:
        result = app(args=argv, standalone_mode=False)
    except ClickException as exc:
        exc.show()
        if OUTPUT.wants_json(argv) and not OUTPUT.emitted:
            emit_json(error_document(exc.exit_code, [exc.format_message()]))
        return exc.exit_code
    except typer.Abort:  # end of input at a prompt
        print("Aborted!", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("crmsync: interrupted", file=sys.stderr)
        return INTERRUPTED
    except Exception as exc:
        from connectors.redaction import redact_text
        from sync.backup import BackupError
        from sync.crash import crash_report
        from sync.state import StateVersionError

        # A state to migrate (or too new), or a backup an upgrade needs and could not make: no
        # crash, a line saying what to do.
        if isinstance(exc, StateVersionError | BackupError):
            code = exc.code if isinstance(exc, BackupError) else 2
            line = redact_text(f"crmsync: {exc}")
            print(line, file=sys.stderr, flush=True)
            if OUTPUT.wants_json(argv) and not OUTPUT.emitted:
                emit_json(error_document(code, [line]))
            return code

        captured = io.StringIO()
        with redirect_stderr(captured):
            code = crash_report(exc)
        # One line (CONTRACTS §1), also when the error's text has several (SQLAlchemy's do).
        line = " ".join(captured.getvalue().split("\n")).strip()
        print(line, file=sys.stderr, flush=True)
        if OUTPUT.wants_json(argv) and not OUTPUT.emitted:
            emit_json(error_document(code, [line]))
        return code
    return result if isinstance(result, int) else 0
