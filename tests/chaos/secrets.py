"""The secrets scan: every configured secret against everything crmsync printed or wrote.

What is scanned (all of it produced by crmsync during a test session):
- the stdout and stderr of every `crmsync` subprocess (`tests.kit.output_dir()`: `--json`
  documents, human tables, logs at every level the tests asked for, crash lines);
- crmsync's own logging inside the test process, at debug level (`in-process.log` there);
- every state database, lock file and HTML report under the given folders (the whole file, so the
  `runs` and `system_runs` tables and every other table and WAL page are in it);
- crash logs (`crmsync-crash-*.log` in the temp folder) written since the session started.

Not scanned: config files. They are the input (written by the tests), and the one kind crmsync
writes itself, the config `crmsync sandbox --write-config` (and the demo) writes for its
sandboxes, carries the sandboxes' credentials by design.
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from connectors.redaction import is_sensitive_name
from connectors.registry import TYPES, sandbox_class
from connectors.sandbox.app import ISSUED_TOKEN_MARK
from tests.kit import SECRETS, output_dir

SCANNED_SUFFIXES = (".out", ".err", ".log", ".db", ".db-wal", ".lock", ".html")


@dataclass(frozen=True)
class Hit:
    path: Path
    secret: str

    def __str__(self) -> str:
        # Never print the secret itself: the first four characters say which one it was.
        return f"{self.path}: a secret starting {self.secret[:4]!r} ({len(self.secret)} characters)"


def sandbox_secrets() -> set[str]:
    """Every sandbox's default credentials (what `--write-config` puts in its config, and the older
    ones an emulator still accepts, such as Shopify's fixed token)."""
    found = set()
    for system_type in TYPES:
        app = sandbox_class(system_type)()
        found.update(app.known_secrets())
        for key, value in app.client_settings().items():
            if isinstance(value, str) and is_sensitive_name(key):
                found.add(value)
    return found


# Every token an emulator issues carries the mark and 32 hex digits, wherever and in whichever
# process it was issued: one found in crmsync's output is a leak like any configured secret.
ISSUED_TOKEN = re.compile(re.escape(ISSUED_TOKEN_MARK).encode() + rb"[0-9a-f]{32}")


def all_secrets() -> set[str]:
    return sandbox_secrets() | SECRETS


def scanned_files(folders: Iterable[Path], since: float) -> Iterator[Path]:
    seen: set[Path] = set()
    for folder in [output_dir(), *folders]:
        if not folder.exists():
            continue
        for path in folder.rglob("*"):
            if path.is_file() and path.name.endswith(SCANNED_SUFFIXES) and path not in seen:
                seen.add(path)
                yield path
    for path in Path(tempfile.gettempdir()).glob("crmsync-crash-*.log"):
        if path.stat().st_mtime >= since and path not in seen:
            yield path


def scan(folders: Iterable[Path], since: float, secrets: Iterable[str] | None = None) -> tuple[int, list[Hit]]:
    """(files scanned, hits). A secret is searched as bytes, so binary files count too."""
    wanted = [s.encode() for s in sorted(all_secrets() if secrets is None else set(secrets)) if len(s) >= 4]
    hits: list[Hit] = []
    files = 0
    for path in scanned_files(folders, since):
        try:
            data = path.read_bytes()
        except OSError:
            continue
        files += 1
        hits += [Hit(path, secret.decode()) for secret in wanted if secret in data]
        hits += [Hit(path, match.decode()) for match in sorted(set(ISSUED_TOKEN.findall(data)))]
    return files, hits
