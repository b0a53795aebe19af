"""A real PostgreSQL server for tests: Debian's `postgresql` package, started in a temporary folder,
listening on 127.0.0.1 only, on a free port, stopped at the end.

`initdb` refuses to run as root and CI runs as root, so the server runs as the unprivileged
`postgres` user the package creates. `make debs` installs the package when it is missing; a server
that cannot start fails the test that needs it, saying why (never a skip).
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.kit import wait_until

PACKAGE_BIN = Path("/usr/lib/postgresql")


@dataclass(frozen=True)
class PostgresServer:
    port: int
    folder: Path
    user: str = "postgres"

    def url(self, database: str = "postgres", driver: str = "postgresql+psycopg") -> str:
        return f"{driver}://{self.user}@127.0.0.1:{self.port}/{database}"

    def psql(self, sql: str, database: str = "postgres") -> str:
        result = subprocess.run(
            [
                _tool("psql"),
                "-X",
                "-q",
                "-A",
                "-t",
                "-h",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-U",
                self.user,
                "-d",
                database,
                "-v",
                "ON_ERROR_STOP=1",
                "-c",
                sql,
            ],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        return result.stdout.strip()

    def restore(self, dump: Path, database: str, *, clean: bool = True) -> subprocess.CompletedProcess[str]:
        """`pg_restore` of a `crmsync backup` dump into `database`, as docs/operations.md says
        (`--clean --if-exists`: the deployment's schema dropped and made again from the dump), or
        without `--clean` (into a database whose copy of that schema is gone)."""
        cleaning = ["--clean", "--if-exists"] if clean else []
        connection = ["-h", "127.0.0.1", "-p", str(self.port), "-U", self.user, "-d", database]
        return subprocess.run(
            [_tool("pg_restore"), *connection, *cleaning, str(dump)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )


def _tool(name: str) -> str:
    versions = sorted(PACKAGE_BIN.glob(f"*/bin/{name}"), key=lambda p: int(p.parts[-3]))
    found = str(versions[-1]) if versions else shutil.which(name)
    assert found, f"PostgreSQL's {name} is missing: run `make debs` (apt-get install -y postgresql) first"
    return found


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _as_postgres(args: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
    account = pwd.getpwnam("postgres")
    as_root = os.geteuid() == 0
    return subprocess.run(
        args,
        user=account.pw_uid if as_root else None,
        group=account.pw_gid if as_root else None,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@contextmanager
def postgres_server(deadline_s: float = 60.0) -> Iterator[PostgresServer]:
    folder = Path(tempfile.mkdtemp(prefix="crmsync-pg-"))
    os.chmod(folder, 0o777)
    data = folder / "data"
    try:
        made = _as_postgres(
            [_tool("initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-instructions"],
            timeout=120,
        )
        assert made.returncode == 0, f"initdb failed: {made.stderr}"
        port = _free_port()
        options = f"-c listen_addresses=127.0.0.1 -p {port} -c unix_socket_directories={folder} -c fsync=off"
        started = _as_postgres(
            [
                _tool("pg_ctl"),
                "-D",
                str(data),
                "-l",
                str(folder / "server.log"),
                "-o",
                options,
                "-w",
                "-t",
                str(int(deadline_s)),
                "start",
            ],
            timeout=deadline_s + 10,
        )
        log = (folder / "server.log").read_text() if (folder / "server.log").exists() else ""
        assert started.returncode == 0, f"PostgreSQL did not start: {started.stderr}\n{log}"
        server = PostgresServer(port=port, folder=folder)
        ready = [_tool("pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(port)]
        assert wait_until(
            lambda: subprocess.run(ready, check=False).returncode == 0, timeout=deadline_s, interval=0.05
        ), "PostgreSQL did not accept connections in time"
        try:
            yield server
        finally:
            _as_postgres([_tool("pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"], timeout=60)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
