"""What an unexpected crash leaves behind (CONTRACTS §1: one line, exit 70)."""

from __future__ import annotations

import os
import sys
import tempfile
import traceback
from datetime import UTC, datetime
from pathlib import Path


def crash_report(exc: BaseException) -> int:
    """An unexpected crash: the traceback (redacted) to a log file, one line on stderr, exit 70."""
    from connectors.redaction import redact_text

    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    try:
        # A file of its own (a daemon's cycles can crash twice in one second), readable by its
        # owner alone: the traceback is redacted, but names paths, hosts and record ids.
        handle, name = tempfile.mkstemp(prefix=f"crmsync-crash-{stamp}-", suffix=".log")
        with os.fdopen(handle, "w", encoding="utf-8") as log:
            log.write(redact_text("".join(traceback.format_exception(exc))))
        where = f"details in {Path(name)}"
    except OSError:
        where = "no crash log could be written"
    print(f"crmsync: internal error: {type(exc).__name__}: {redact_text(str(exc))} ({where})", file=sys.stderr)
    return 70
