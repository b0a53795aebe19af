"""structlog setup: readable lines on a terminal, JSON lines otherwise, secrets always redacted.

Redaction is one processor in the chain, placed after exceptions are rendered to text, so no call
site can forget it and no traceback can carry a token past it.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any, TextIO

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

from connectors.redaction import redact_value

LEVELS = ("debug", "info", "warning", "error")
# sd-daemon(3) priorities: under systemd, a line starting with "<N>" is stored at priority N, so
# `journalctl -p warning` finds crmsync's warnings and errors.
JOURNAL_PRIORITY = {"debug": 7, "info": 6, "warning": 4, "error": 3, "critical": 2, "exception": 3}


def writes_to_journal(stream: TextIO) -> bool:
    """systemd sets $JOURNAL_STREAM to "device:inode" of the journal socket it gave the service as
    stdout/stderr; a stream that is that socket is read by journald (sd_journal_stream_fd(3))."""
    expected = os.environ.get("JOURNAL_STREAM", "")
    if not expected:
        return False
    try:
        info = os.fstat(stream.fileno())
    except (OSError, ValueError, AttributeError):
        return False
    return expected == f"{info.st_dev}:{info.st_ino}"


def journal_prefix(renderer: Any) -> Any:
    """The renderer, with each line led by its level's journald priority."""

    def render(logger: WrappedLogger, method: str, event: EventDict) -> str:
        level = str(event.get("level", method))
        return f"<{JOURNAL_PRIORITY.get(level, 6)}>{renderer(logger, method, event)}"

    return render


def redact_event(logger: WrappedLogger, method: str, event: EventDict) -> EventDict:
    redacted = redact_value(dict(event), by_name=True)
    assert isinstance(redacted, dict)
    # The event name itself is ours; only its fields can carry outside data.
    redacted["event"] = redact_value(event.get("event", ""), by_name=False)
    return redacted


def setup_logging(level: str = "info", json_logs: bool | None = None, stream: TextIO | None = None) -> None:
    """`json_logs=None` means: JSON unless the stream is a terminal."""
    out = stream or sys.stderr
    as_json = json_logs if json_logs is not None else not out.isatty()
    renderer: Any = (
        structlog.processors.JSONRenderer(sort_keys=False)
        if as_json
        else structlog.dev.ConsoleRenderer(colors=out.isatty(), exception_formatter=structlog.dev.plain_traceback)
    )
    journal = writes_to_journal(out)
    if journal:
        renderer = journal_prefix(renderer)
    # What every line gets, crmsync's own and the standard logging module's alike.
    stamped_and_redacted: list[Processor] = [
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
        redact_event,
    ]
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            *stamped_and_redacted,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelNamesMapping()[level.upper()]),
        # One write per line, the newline with it: print() writes them apart, and on unbuffered
        # output (PYTHONUNBUFFERED, a daemon's stderr) a line of the standard logging module, from
        # another thread or from the cycle's process on the same stderr, could land between the two
        # and glue two lines into one that no JSON reader takes.
        logger_factory=structlog.WriteLoggerFactory(out),
        cache_logger_on_first_use=False,
    )
    # Libraries that use the standard logging module stay quiet unless something is wrong, and
    # what they do say passes the same redaction.
    handler = logging.StreamHandler(out)
    formatter: logging.Formatter
    if as_json:  # JSON lines are JSON lines, whoever logs them (APScheduler's "skipped" warnings)
        formatter = structlog.stdlib.ProcessorFormatter(
            processor=renderer,
            foreign_pre_chain=[structlog.stdlib.add_log_level, structlog.stdlib.add_logger_name, *stamped_and_redacted],
        )
    else:
        formatter = _JournalFormatter() if journal else logging.Formatter("%(levelname)s %(name)s: %(message)s")
    handler.setFormatter(formatter)
    handler.addFilter(_RedactRecord())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)


class _RedactRecord(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = redact_value(record.getMessage(), by_name=False)
        record.args = None
        return True


class _JournalFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        priority = JOURNAL_PRIORITY.get(record.levelname.lower(), 6)
        return f"<{priority}>{super().format(record)}"
