"""crmsync's log lines reach their stream whole: a line and its newline in one write."""

from __future__ import annotations

import io
import json
import logging

import structlog

from sync.log import setup_logging


class WriteCalls(io.StringIO):
    """A stream that keeps each write call apart, as an unbuffered stderr passes each one on to the
    pipe: between two calls, another thread's or process's line may land."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[str] = []

    def write(self, text: str) -> int:
        self.calls.append(text)
        return len(text)

    def isatty(self) -> bool:
        return False


def test_every_log_line_is_one_write_with_its_newline() -> None:
    """A daemon logs `next cycle at` while APScheduler's thread warns through the standard logging
    module: with the message and its newline written apart, the warning could glue onto the JSON
    line, and a reader of the log (the service test, a log shipper) takes neither."""
    out = WriteCalls()
    setup_logging("info", stream=out)
    structlog.get_logger("crmsync.scheduler").info("next cycle at", at="2026-12-07T03:00:00+00:00")
    logging.getLogger("apscheduler.scheduler").warning("Execution of job skipped")
    assert len(out.calls) == 2
    assert all(call.endswith("\n") and call.count("\n") == 1 for call in out.calls)
    assert json.loads(out.calls[0])["event"] == "next cycle at"
    assert json.loads(out.calls[1])["event"] == "Execution of job skipped"


def test_a_line_of_the_standard_logging_module_is_json_too_when_the_logs_are() -> None:
    """CONTRACTS §1: logs are JSON lines whenever stderr is not a TTY. APScheduler warns through the
    standard logging module at every skipped tick, and its plain line broke `jq` over a daemon's log
    (the operations guide's own recipe stopped at it)."""
    out = WriteCalls()
    setup_logging("info", stream=out)
    logging.getLogger("apscheduler.scheduler").warning("Execution of job %r skipped (token=%s)", "cycle", "tok_91xyz")
    try:
        raise ValueError("broken")
    except ValueError:
        logging.getLogger("some.library").exception("failed")
    first, second = (json.loads(call) for call in out.calls)
    assert first["event"] == "Execution of job 'cycle' skipped (token=***)"
    assert (first["level"], first["logger"]) == ("warning", "apscheduler.scheduler") and "timestamp" in first
    assert second["level"] == "error" and "ValueError: broken" in second["exception"]
    # On a terminal they stay plain, as crmsync's own lines are rendered for people.
    tty = WriteCalls()
    tty.isatty = lambda: True  # type: ignore[method-assign]
    setup_logging("info", stream=tty)
    logging.getLogger("apscheduler.scheduler").warning("Execution of job skipped")
    assert tty.calls == ["WARNING apscheduler.scheduler: Execution of job skipped\n"]
