"""What an unexpected crash leaves behind (CONTRACTS §1: one line, exit 70)."""

from __future__ import annotations

import sys
import tempfile
import traceback
from datetime import UTC, datetime
from pathlib import Path


def crash_report(exc: BaseException) -> int:
    """An unexpected crash: the traceback (redacted) to a log file, one line on stderr, exit 70."""
    from connectors.redaction import redact_text

    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    path = Path(tempfile.gettempdir()) / f"crmsync-crash-{stamp}.log"
    try:
        path.write_text(redact_text("".join(traceback.format_exception(exc))))
        where = f"details in {path}"
    except OSError:
        where = "no crash log could be written"
    print(f"crmsync: internal error: {type(exc).__name__}: {redact_text(str(exc))} ({where})", file=sys.stderr)
    return 70
