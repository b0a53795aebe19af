"""The daemon: APScheduler 3 runs a cycle on the configured interval or cron, one at a time, slots
missed while a cycle ran coalesced into one cycle right after it; SIGTERM/SIGINT let the running
cycle finish its batch, then it exits.

Each cycle runs in a process of its own, started for it (`spawn`: a fresh interpreter, so it
inherits no lock another thread of the daemon happened to hold): what a cycle builds up, hundreds
of megabytes for a large merchant, goes back to the system whole when that process ends, where a
long-lived Python process keeps most of it, so the daemon idles between cycles at its start-up
size. The daemon keeps holding the state lock for it, passes SIGTERM on, and on Linux the cycle
process is told to stop (SIGTERM) if the daemon dies.

The daemon also holds the systems' expiring tokens (connectors/auth.py, in memory only): each cycle
process starts with them and hands back what it renewed through a pipe, so a daemon asks a vendor
for a token only when one expires, not once per cycle. The same pipe brings the cycle's summary
(sync/metrics.py says why the pipe and not the state) for the daemon's metrics, health endpoint and
alerts (sync/service.py). After each cycle the daemon logs when the next one starts.

On PostgreSQL the daemon holds the deployment's advisory lock in a session of its own (sync/pglock.py)
and a cycle's process does not: it gets the lock's proof (the daemon's backend pid and the key) and,
before each write batch, asks the server whether that session still holds the lock; when it does
not, the cycle stops writing at once (`lock lost: stopping writes`). The daemon checks its session
too, before each cycle and about every second while it runs; once it is lost, the daemon stops its
schedule, tells the running cycle to stop, and returns with `lock_lost` set: `crmsync run` then goes
back to waiting as a standby (sync/cli.py), since another replica may be active by now.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import multiprocessing
import os
import resource
import signal
import threading
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from multiprocessing.connection import Connection
from typing import TYPE_CHECKING, Any, NamedTuple

import structlog
from apscheduler.events import EVENT_JOB_MAX_INSTANCES
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.interval import IntervalTrigger

from connectors.auth import TOKENS, Token
from connectors.telemetry import TELEMETRY
from mapping.normalize import clear_caches
from sync.clock import adopt_origin, now, origin
from sync.config import ConfigError, LoadedConfig, ScheduleSettings
from sync.cron import first_cycle_at, zone
from sync.cron import trigger as cron_trigger
from sync.lock import LockLost
from sync.metrics import crash_summary, cycle_summary
from sync.pipeline import Cycle, return_freed_memory
from sync.service import Monitor, Service
from sync.state import StateStore
from sync.state.erasure_replay import reconcile

if TYPE_CHECKING:
    from sync.pglock import LockProof
    from sync.runtime import WriterLock

log = structlog.get_logger("crmsync.daemon")

LOCK_CHECK_S = 1.0  # how often the daemon proves its lock while it waits or a cycle runs

PR_SET_PDEATHSIG = 1


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def rss_mb() -> float | None:
    """The resident set now (Linux), to see that memory stays flat from cycle to cycle."""
    try:
        with open("/proc/self/statm") as statm:
            pages = int(statm.read().split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return pages * resource.getpagesize() / (1024 * 1024)


def release_memory() -> None:
    """Give back what a cycle leaves behind before the daemon waits for the next one: the caches of
    normalised values, the garbage, and the free pages of the C heap (glibc keeps them otherwise)."""
    clear_caches()
    gc.collect()
    return_freed_memory()


def run_cycle(
    loaded: LoadedConfig,
    store: StateStore,
    stop: threading.Event,
    write_guard: Callable[[], None] | None = None,
) -> dict[str, Any]:
    """One cycle, and its summary in the log; returns the summary for the daemon's metrics.
    `write_guard` proves the writer lock before each write batch (raises LockLost)."""
    TELEMETRY.snapshot_and_reset()  # what was counted before this cycle is not its own
    started = time.monotonic()
    # The daemon reconciled the erasure journal when it took the lock; again per cycle, as cheap as
    # reading a small file or table, for a state swapped or restored under it against the docs (a
    # JournalMismatch then fails the cycle before it reads or writes anything).
    reconcile(store.erasures, now())
    report = Cycle(loaded, store, clock=now, stop_event=stop, write_guard=write_guard).run("run")
    summary = cycle_summary(
        report, store, duration=time.monotonic() - started, telemetry=TELEMETRY.snapshot_and_reset()
    )
    log.info(
        "cycle finished",
        run_id=report.run_id,
        profiles=report.profiles,
        systems={name: outcome.status for name, outcome in report.systems.items()},
        written=sum(o.written for o in report.systems.values()),
        rejected=sum(o.rejected for o in report.systems.values()),
        now=report.started_at.isoformat(),
        peak_rss_mb=round(peak_rss_mb(), 1),
        rss_mb=round(rss_mb() or 0.0, 1),
    )
    return summary


def run_cycle_in_child(
    loaded: LoadedConfig,
    stop: threading.Event,
    logging: tuple[str, bool | None],
    proof: LockProof | None = None,
) -> dict[str, Any] | None:
    """One cycle in a process of its own; waits for it, passing a stop request on and taking back
    the tokens it renewed and the cycle's summary (a crash's summary when it ended without one;
    None when it was stopped before it began). With `proof` (PostgreSQL), the cycle proves before
    each write batch that the daemon's session still holds the lock."""
    context = multiprocessing.get_context("spawn")
    tokens_back, tokens_out = context.Pipe(duplex=False)
    started = time.monotonic()
    received: dict[str, Any] = {}
    child = context.Process(
        target=_cycle_process,
        args=(loaded, *logging, origin(), TOKENS.snapshot(), tokens_out, proof),
        name="crmsync-cycle",
    )
    child.start()
    tokens_out.close()  # the child holds the sending end now
    passed_on = False
    while child.exitcode is None:
        child.join(0.1)
        _take_messages(tokens_back, received)
        if stop.is_set() and not passed_on and child.pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child.pid, signal.SIGTERM)  # it finishes its batch and records it
            passed_on = True
    _take_messages(tokens_back, received)
    tokens_back.close()
    if passed_on and child.exitcode == -signal.SIGTERM:
        # Stopped while it was still starting (before it could listen for SIGTERM): nothing begun.
        log.info("cycle process stopped before it began", exit_code=child.exitcode)
        return None
    if child.exitcode != 0:
        log.error("cycle process failed", exit_code=child.exitcode)
    summary: dict[str, Any] | None = received.get("summary")
    if summary is None:
        error = received.get("lock_lost") or f"the cycle process ended without a result (exit code {child.exitcode})"
        return crash_summary(loaded.config.systems, error, now(), time.monotonic() - started)
    return summary


def _take_messages(pipe: Connection, received: dict[str, Any]) -> None:
    """What a cycle process sends: ("summary", dict) once, or ("lock_lost", message) when it
    stopped writing for want of the lock, and ("tokens", {key: Token}) at its end."""
    with contextlib.suppress(EOFError, OSError):
        while pipe.poll():
            kind, body = pipe.recv()
            if kind == "tokens":
                TOKENS.adopt(body)
            else:
                received[kind] = body


def _cycle_process(
    loaded: LoadedConfig,
    level: str,
    json_logs: bool | None,
    clock_origin: tuple[float, datetime],
    tokens: Mapping[str, Token],
    tokens_back: Connection,
    proof: LockProof | None = None,
) -> None:
    """The body of a cycle process: the daemon's config (its secrets registered for redaction
    here too), clock (a sped-up clock runs on from where the daemon's started) and tokens, its own
    connections to the state (and, with `proof`, one to prove the daemon's lock before each write
    batch). The tokens it holds at the end go back to the daemon."""
    from connectors.redaction import register_secret
    from sync.config import iter_secrets
    from sync.log import setup_logging

    for secret in iter_secrets(loaded.config):
        register_secret(secret)
    TOKENS.adopt(tokens)
    adopt_origin(clock_origin)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    with contextlib.suppress(AttributeError, OSError):
        ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)  # Linux: stop when the daemon dies
    setup_logging(level, json_logs)
    store = StateStore(loaded.state_url())
    try:
        summary = run_cycle(loaded, store, stop, proof.guard() if proof is not None else None)
        with contextlib.suppress(OSError):
            tokens_back.send(("summary", summary))
    except LockLost as lost:  # logged by the guard; nothing more was written
        with contextlib.suppress(OSError):
            tokens_back.send(("lock_lost", str(lost)))
        raise SystemExit(1) from None
    except Exception:
        log.exception("cycle crashed")
        raise SystemExit(1) from None
    finally:
        store.close()
        with contextlib.suppress(OSError):
            tokens_back.send(("tokens", TOKENS.snapshot()))
            tokens_back.close()


class DaemonEnd(NamedTuple):
    code: int
    cycles: int
    lock_lost: bool = False  # the writer lock's session was lost: back to standby (sync/cli.py)


def run_daemon(
    loaded: LoadedConfig,
    store: StateStore,
    stop: threading.Event,
    *,
    max_cycles: int | None = None,
    logging: tuple[str, bool | None] = ("info", None),
    isolate: bool = True,
    lock: WriterLock | None = None,
) -> DaemonEnd:
    """`store` is held (with the state lock, `lock`) for the daemon's lifetime; `logging` (level,
    JSON or not) is passed to each cycle process; `isolate=False` runs cycles in this process.
    Returns the exit code, the number of cycles run and whether it ended because the lock was lost
    (the module's docstring). With `[service] listen`, /healthz and /metrics are served while it
    runs (an address that cannot be bound is a config error: exit 2 before any cycle)."""
    schedule = loaded.config.schedule
    one_at_a_time = threading.Lock()
    finished = 0
    halt = threading.Event()  # stop requested, or the lock lost: no new cycle, the running one stops
    lost = threading.Event()
    monitor = Monitor(loaded, store)
    service = _start_service(loaded, monitor)

    def lock_lost() -> bool:
        if lock is None or lost.is_set() or lock.still_held():
            return lost.is_set()
        log.error("lock lost: stopping writes", lock=getattr(lock, "where", None))
        lost.set()
        halt.set()
        return True

    # A slot that passed while a cycle ran (APScheduler skips it: one instance at a time) is run
    # once, right after that cycle: a 16-minute cycle on a 15-minute interval syncs back to back,
    # not every 30 minutes.
    came_due = threading.Event()

    def cycle() -> None:
        came_due.clear()  # this run stands for any slot missed before it
        while True:
            one_cycle()
            if lock_lost():
                return
            again = came_due.is_set() and not halt.is_set()
            _log_next_cycle(scheduler, halt, now_due=again)
            if not again:
                return
            came_due.clear()

    def one_cycle() -> None:
        nonlocal finished
        if halt.is_set() or lock_lost():
            return
        if not one_at_a_time.acquire(blocking=False):
            log.warning("previous cycle still running; this one is skipped")
            return
        started = time.monotonic()
        summary: dict[str, Any] | None = None
        before: int | None = None  # a crashed cycle's run is the one it began after this
        try:
            before = store.last_seq()
            if isolate:
                proof = lock.proof() if lock is not None else None
                summary = run_cycle_in_child(loaded, halt, logging, proof)
            else:
                summary = run_cycle(loaded, store, halt, lock.guard if lock is not None else None)
                release_memory()
        except LockLost:
            summary = None  # logged by the guard; the daemon finds its lock gone below
        except Exception as exc:
            log.exception("cycle crashed")
            error = f"the cycle crashed: {type(exc).__name__}"
            summary = crash_summary(loaded.config.systems, error, now(), time.monotonic() - started)
        finally:
            one_at_a_time.release()
            finished += 1
            if max_cycles is not None and finished >= max_cycles:
                stop.set()
                halt.set()
        crashed = summary is not None and summary.get("outcome") == "crashed"
        if crashed and before is not None and not lock_lost():
            try:  # the cycle recorded nothing of itself; the daemon still holds the writer lock
                store.record_crash(before, summary or {}, now())
            except Exception:
                log.exception("the crashed cycle could not be recorded in the state")
        # Once the lock is lost the cycle is another holder's business: its alert memory goes in
        # the state, which this daemon may no longer write (it would overwrite the new holder's).
        if summary is not None and not lock_lost():
            try:
                monitor.after_cycle(summary)
            except Exception:
                log.exception("cycle figures could not be taken in")

    trigger, first_at = _schedule_trigger(schedule, store)
    scheduler = BackgroundScheduler(
        timezone=UTC, job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None}
    )
    scheduler.add_listener(lambda _: came_due.set(), EVENT_JOB_MAX_INSTANCES)
    scheduler.add_job(cycle, trigger, id="cycle", next_run_time=first_at)
    scheduler.start()
    log.info(
        "daemon started",
        schedule=f"{schedule.cron} ({schedule.timezone})" if schedule.cron else f"every {schedule.every_seconds:g}s",
        first_cycle=first_at.astimezone(UTC).replace(microsecond=0).isoformat(),
    )
    # A timed wait keeps the main thread responsive to signals on every platform.
    checked = time.monotonic()
    while not stop.wait(0.2) and not halt.is_set():
        if time.monotonic() - checked >= LOCK_CHECK_S:
            lock_lost()
            checked = time.monotonic()
    halt.set()
    if lost.is_set():
        log.info("lock lost: stopping the schedule and the running cycle")
    else:
        log.info("stopping: letting the running cycle finish its batch")
    scheduler.shutdown(wait=True)
    if service is not None:
        service.stop()
    monitor.close()
    log.info("daemon stopped", cycles=finished, lock_lost=lost.is_set())
    return DaemonEnd(0, finished, lost.is_set())


def _schedule_trigger(schedule: ScheduleSettings, store: StateStore) -> tuple[Any, datetime]:
    """The schedule's trigger, and when the first cycle runs: at once on an interval; on a cron
    line at once only when no cycle ran yet or a slot passed since the last one began (the daemon
    was down then), else at the next slot (sync/cron.py, `first_cycle_at`)."""
    real = datetime.now(UTC)
    if not schedule.cron:
        return IntervalTrigger(seconds=schedule.every_seconds, timezone=UTC), real
    made = cron_trigger(schedule.cron, zone(schedule.timezone))
    # The state's times are on crmsync's clock (which `$CRMSYNC_NOW` may move), APScheduler's on
    # the system's: the decision is made on the first, then moved by the two clocks' difference
    # (in whole seconds, so that a slot stays on its second).
    at = now()
    first = first_cycle_at(made, store.last_started("run"), at)
    return made, first - timedelta(seconds=round((at - real).total_seconds()))


def _start_service(loaded: LoadedConfig, monitor: Monitor) -> Service | None:
    address = loaded.config.service.address()
    if address is None:
        return None
    host, port = address
    try:
        service = Service(monitor, host, port)
    except OSError as exc:
        monitor.close()
        raise ConfigError(
            [
                f"config error: service.listen: cannot listen on {loaded.config.service.listen} "
                f"({exc.strerror or type(exc).__name__})"
            ]
        ) from None
    service.start()
    return service


def _log_next_cycle(scheduler: BackgroundScheduler, stop: threading.Event, *, now_due: bool = False) -> None:
    """When the next cycle starts (real time, UTC, whole seconds): right away when a slot passed
    while this one ran (`now_due`)."""
    if stop.is_set():
        return
    job = scheduler.get_job("cycle")
    upcoming = datetime.now(UTC) if now_due else (job.next_run_time if job is not None else None)
    if upcoming is None:
        return
    at = max(upcoming, datetime.now(UTC)).astimezone(UTC).replace(microsecond=0)
    if now_due:
        log.info("next cycle at", at=at.isoformat(), why="a slot passed while the last cycle ran")
    else:
        log.info("next cycle at", at=at.isoformat())
