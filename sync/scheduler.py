"""The daemon: APScheduler 3 runs a cycle on the configured interval or cron, one at a time,
coalescing missed runs; SIGTERM/SIGINT let the running cycle finish its batch, then it exits."""

from __future__ import annotations

import resource
import threading
from datetime import UTC, datetime

import structlog
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from sync.clock import now
from sync.config import LoadedConfig
from sync.pipeline import Cycle
from sync.state import StateStore

log = structlog.get_logger("crmsync.daemon")


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


def run_daemon(loaded: LoadedConfig, store: StateStore, stop: threading.Event, *, max_cycles: int | None = None) -> int:
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
