"""structlog setup: readable lines on a terminal, JSON lines otherwise, secrets always redacted.

Redaction is one processor in the chain, placed after exceptions are rendered to text, so no call
site can forget it and no traceback can carry a token past it.
"""

from __future__ import annotations

import logging
import sys
from typing import Any, TextIO

import structlog
from structlog.typing import EventDict, WrappedLogger

from connectors.redaction import redact_value

LEVELS = ("debug", "info", "warning", "error")


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
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            redact_event,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelNamesMapping()[level.upper()]),
        logger_factory=structlog.PrintLoggerFactory(out),
        cache_logger_on_first_use=False,
    )
    # Libraries that use the standard logging module stay quiet unless something is wrong, and
    # what they do say passes the same redaction.
    handler = logging.StreamHandler(out)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    handler.addFilter(_RedactRecord())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)


class _RedactRecord(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = redact_value(record.getMessage(), by_name=False)
        record.args = None
        return True
