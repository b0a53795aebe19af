"""The daemon: APScheduler 3 runs a cycle on the configured interval or cron, one at a time,
coalescing missed runs; SIGTERM/SIGINT let the running cycle finish its batch, then it exits.

Each cycle runs in a process of its own, started for it (`spawn`: a fresh interpreter, so it
inherits no lock another thread of the daemon happened to hold): what a cycle builds up, hundreds
of megabytes for a large merchant, goes back to the system whole when that process ends, where a
long-lived Python process keeps most of it, so the daemon idles between cycles at its start-up
size. The daemon keeps holding the state lock for it, passes SIGTERM on, and on Linux the cycle
process is told to stop (SIGTERM) if the daemon dies.

The daemon also holds the systems' expiring tokens (connectors/auth.py, in memory only): each cycle
process starts with them and hands back what it renewed through a pipe, so a daemon asks a vendor
for a token only when one expires, not once per cycle.
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
from collections.abc import Mapping
from datetime import UTC, datetime
from multiprocessing.connection import Connection

import structlog
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from connectors.auth import TOKENS, Token
from mapping.normalize import clear_caches
from sync.clock import adopt_origin, now, origin
from sync.config import LoadedConfig
from sync.pipeline import Cycle, return_freed_memory
from sync.state import StateStore

log = structlog.get_logger("crmsync.daemon")

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


def run_cycle(loaded: LoadedConfig, store: StateStore, stop: threading.Event) -> None:
    """One cycle, and its summary in the log."""
    report = Cycle(loaded, store, clock=now, stop_event=stop).run("run")
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


def run_cycle_in_child(loaded: LoadedConfig, stop: threading.Event, logging: tuple[str, bool | None]) -> None:
    """One cycle in a process of its own; waits for it, passing a stop request on and taking back
    the tokens it renewed."""
    context = multiprocessing.get_context("spawn")
    tokens_back, tokens_out = context.Pipe(duplex=False)
    child = context.Process(
        target=_cycle_process,
        args=(loaded, *logging, origin(), TOKENS.snapshot(), tokens_out),
        name="crmsync-cycle",
    )
    child.start()
    tokens_out.close()  # the child holds the sending end now
    passed_on = False
    while child.exitcode is None:
        child.join(0.1)
        _take_tokens(tokens_back)
        if stop.is_set() and not passed_on and child.pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child.pid, signal.SIGTERM)  # it finishes its batch and records it
            passed_on = True
    _take_tokens(tokens_back)
    tokens_back.close()
    if passed_on and child.exitcode == -signal.SIGTERM:
        # Stopped while it was still starting (before it could listen for SIGTERM): nothing begun.
        log.info("cycle process stopped before it began", exit_code=child.exitcode)
    elif child.exitcode != 0:
        log.error("cycle process failed", exit_code=child.exitcode)


def _take_tokens(pipe: Connection) -> None:
    with contextlib.suppress(EOFError, OSError):
        while pipe.poll():
            TOKENS.adopt(pipe.recv())


def _cycle_process(
    loaded: LoadedConfig,
    level: str,
    json_logs: bool | None,
    clock_origin: tuple[float, datetime],
    tokens: Mapping[str, Token],
    tokens_back: Connection,
) -> None:
    """The body of a cycle process: the daemon's config (its secrets registered for redaction
    here too), clock (a sped-up clock runs on from where the daemon's started) and tokens, its own
    connections to the state. The tokens it holds at the end go back to the daemon."""
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
        run_cycle(loaded, store, stop)
    except Exception:
        log.exception("cycle crashed")
        raise SystemExit(1) from None
    finally:
        store.close()
        with contextlib.suppress(OSError):
            tokens_back.send(TOKENS.snapshot())
            tokens_back.close()


def run_daemon(
    loaded: LoadedConfig,
    store: StateStore,
    stop: threading.Event,
    *,
    max_cycles: int | None = None,
    logging: tuple[str, bool | None] = ("info", None),
    isolate: bool = True,
) -> int:
    """`store` is held (with the state lock) for the daemon's lifetime; `logging` (level, JSON or
    not) is passed to each cycle process; `isolate=False` runs cycles in this process."""
    schedule = loaded.config.schedule
    one_at_a_time = threading.Lock()
    finished = 0

    def cycle() -> None:
        nonlocal finished
        if stop.is_set():
            return
        if not one_at_a_time.acquire(blocking=False):
            log.warning("previous cycle still running; this one is skipped")
            return
        try:
            if isolate:
                run_cycle_in_child(loaded, stop, logging)
            else:
                run_cycle(loaded, store, stop)
                release_memory()
        except Exception:
            log.exception("cycle crashed")
        finally:
            one_at_a_time.release()
            finished += 1
            if max_cycles is not None and finished >= max_cycles:
                stop.set()

    trigger = (
        CronTrigger.from_crontab(schedule.cron, timezone=UTC)
        if schedule.cron
        else IntervalTrigger(seconds=schedule.every_seconds, timezone=UTC)
    )
    scheduler = BackgroundScheduler(
        timezone=UTC, job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None}
    )
    scheduler.add_job(cycle, trigger, id="cycle", next_run_time=datetime.now(UTC))
    scheduler.start()
    log.info("daemon started", schedule=schedule.cron or f"every {schedule.every_seconds:g}s")
    # A timed wait keeps the main thread responsive to signals on every platform.
    while not stop.wait(0.2):
        pass
    log.info("stopping: letting the running cycle finish its batch")
    scheduler.shutdown(wait=True)
    log.info("daemon stopped", cycles=finished)
    return 0
