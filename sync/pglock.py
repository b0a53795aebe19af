"""One writer per deployment on PostgreSQL: a session-level advisory lock.

A deployment is one (database, schema). Its lock key is a signed 64-bit integer, the first eight
bytes (big-endian) of SHA-256 over ``"crmsync:" + database + "/" + schema``, the schema being
`[state] schema`, else the one the URL's ``-c search_path=`` option names, else the one the server
creates the role's tables in (``current_schema()``, `sync.runtime.state_schema`; ``public`` when
this module is given none): stable
across processes, hosts and Python versions (``hash()`` is not), the same for every replica of the
deployment, different for each schema of a database. PostgreSQL shows a bigint advisory lock in
``pg_locks`` as ``classid`` = the key's high 32 bits and ``objid`` = its low 32 bits, with
``objsubid`` = 1, in the lock's ``database``.

The lock is held by a connection of its own (autocommit, never used for anything else), so the
server frees it the moment that session ends: a SIGKILLed holder's kernel closes the socket and the
lock is free at once. A holder that vanishes from the network (host down, cable out) is noticed
by TCP keepalives and ``tcp_user_timeout`` set on both ends of the session (libpq's parameters on
ours, the server's session settings on its), all derived from ``[state] failover`` so that a dead
session is dropped, and its lock freed, within that time.

Who holds it is read from the holder's own session: its ``application_name`` is
``crmsync <command> pid=<pid> host=<host>`` (PostgreSQL cuts it at 63 bytes: a long host name is
shortened), and ``since`` is that session's ``backend_start``: the lock connection is opened right
before the lock is tried, so it is the time the lock was taken, to within a round trip.

A process that holds the lock proves it before each write batch with `still_held` (a query on the
lock's own session: an error counts as lost). A cycle's process, which does not own that session,
gets a `LockProof` (the holder's backend pid and the key) and asks the server, on a connection of
its own, whether that backend still holds that lock (`LockProof.guard`).
"""

from __future__ import annotations

import hashlib
import os
import re
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import psycopg
import structlog

from sync.lock import LockHeld, LockLost
from sync.state.sql import schema_of

log = structlog.get_logger("crmsync.lock")

DEFAULT_SCHEMA = "public"
DEFAULT_FAILOVER_S = 30.0
STANDBY_POLL_S = 0.5  # how often a standby looks whether the lock is free
APPLICATION_NAME = re.compile(r"^crmsync (?P<command>\S+) pid=(?P<pid>\d+) host=(?P<host>.*)$")

_SAME_LOCK = (
    "l.locktype = 'advisory' AND l.granted AND l.objsubid = 1"
    " AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())"
    " AND l.classid::bigint = %(high)s AND l.objid::bigint = %(low)s"
)
HOLDER_QUERY = (
    "SELECT a.pid, a.application_name, a.backend_start, host(a.client_addr)"
    " FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid"
    f" WHERE {_SAME_LOCK} ORDER BY a.backend_start LIMIT 1"
)
HELD_BY_QUERY = f"SELECT count(*) FROM pg_locks l WHERE {_SAME_LOCK} AND l.pid = %(pid)s"


def lock_key(database: str, schema: str | None) -> int:
    """The deployment's advisory lock key (see the module's docstring)."""
    name = f"crmsync:{database}/{schema or DEFAULT_SCHEMA}"
    return int.from_bytes(hashlib.sha256(name.encode("utf-8")).digest()[:8], "big", signed=True)


def _halves(key: int) -> dict[str, int]:
    return {"high": (key >> 32) & 0xFFFFFFFF, "low": key & 0xFFFFFFFF}


def keepalive_settings(failover_s: float) -> dict[str, int]:
    """TCP settings that notice a vanished peer within `failover_s`: the first probe after a third
    of it in silence, three probes a sixth of it apart (at most five sixths in all), and no sent
    data left unacknowledged for longer than it (tcp_user_timeout, milliseconds)."""
    idle = max(1, int(failover_s / 3))
    interval = max(1, int(failover_s / 6))
    return {
        "keepalives_idle": idle,
        "keepalives_interval": interval,
        "keepalives_count": 3,
        "tcp_user_timeout": max(1000, int(failover_s * 1000)),
    }


def libpq_params(url: str) -> dict[str, Any]:
    """libpq connection parameters for a SQLAlchemy URL (``postgresql+psycopg://user:pw@host:port/db?...``):
    its query's settings (`host=/run/postgresql`, `sslmode=require`, ...) with the URL's own parts
    over them. Every connection crmsync makes to the state, `pg_dump`'s too, starts from these."""
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    params: dict[str, Any] = {str(k): v for k, v in parsed.query.items() if isinstance(v, str)}
    params.update(
        host=parsed.host or params.get("host") or "127.0.0.1",
        port=parsed.port or params.get("port") or 5432,
        user=parsed.username or params.get("user") or "postgres",
        dbname=parsed.database or params.get("dbname") or "postgres",
    )
    if parsed.password is not None:
        params["password"] = str(parsed.password)
    return params


def connect_kwargs(url: str, failover_s: float, application_name: str) -> dict[str, Any]:
    """`libpq_params`, with keepalives on our end and the same bounds asked of the server for its end."""
    tcp = keepalive_settings(failover_s)
    server_side = (
        f"-c tcp_keepalives_idle={tcp['keepalives_idle']} -c tcp_keepalives_interval={tcp['keepalives_interval']}"
        f" -c tcp_keepalives_count={tcp['keepalives_count']} -c tcp_user_timeout={tcp['tcp_user_timeout']}"
    )
    kwargs = libpq_params(url)
    kwargs.update(
        application_name=application_name[:63],
        connect_timeout=max(2, int(failover_s)),
        keepalives=1,
        options=f"{kwargs.get('options', '')} {server_side}".strip(),
        **tcp,
    )
    return kwargs


def server_schema(url: str) -> str:
    """The schema a connection of this URL creates its tables in when crmsync names none: the first
    of the server's search path that exists (a role's own schema, where the DBA gave each role one;
    PostgreSQL 15 lets ordinary roles create nothing in `public`)."""
    with _connect(url, DEFAULT_FAILOVER_S, f"crmsync schema pid={os.getpid()}") as conn:
        row = conn.execute("SELECT current_schema()").fetchone()
    return str(row[0]) if row and row[0] else DEFAULT_SCHEMA


def database_of(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).database or "postgres"


def _connect(url: str, failover_s: float, application_name: str) -> psycopg.Connection[Any]:
    return psycopg.connect(autocommit=True, **connect_kwargs(url, failover_s, application_name))


def _holder(row: tuple[Any, ...] | None) -> dict[str, Any] | None:
    """The holder's details from its session: (backend pid, application_name, backend_start, address)."""
    if row is None:
        return None
    backend_pid, application, started, address = row
    found = APPLICATION_NAME.match(application or "")
    since = started.astimezone(UTC).isoformat(timespec="seconds") if isinstance(started, datetime) else None
    holder: dict[str, Any] = (
        {"pid": int(found["pid"]), "host": found["host"], "command": found["command"]}
        if found
        else {"pid": None, "host": address, "command": application or "not crmsync"}
    )
    return {**holder, "since": since, "backend_pid": backend_pid, "address": address}


def where(url: str, schema: str | None, key: int) -> str:
    return f"PostgreSQL advisory lock {key} (database {database_of(url)}, schema {schema or DEFAULT_SCHEMA})"


class AdvisoryLock:
    """The deployment's lock, held by a session of its own. Not reentrant: one `try_acquire`."""

    def __init__(self, url: str, schema: str | None = None, *, failover_s: float = DEFAULT_FAILOVER_S) -> None:
        self.url = url
        self.schema = schema or schema_of(url) or DEFAULT_SCHEMA
        self.failover_s = failover_s
        self.key = lock_key(database_of(url), self.schema)
        self.where = where(url, self.schema, self.key)
        self._conn: psycopg.Connection[Any] | None = None
        self._backend_pid: int | None = None
        self._mutex = threading.Lock()

    @property
    def holder_backend_pid(self) -> int | None:
        """The server process of the session that holds the lock (None when not held)."""
        return self._backend_pid

    def try_acquire(self, command: str) -> None:
        """Take the lock now or raise LockHeld naming its holder (host, pid, command, since)."""
        name = f"crmsync {command} pid={os.getpid()} host={socket.gethostname()}"
        conn = _connect(self.url, self.failover_s, name)
        try:
            row = conn.execute("SELECT pg_try_advisory_lock(%s), pg_backend_pid()", (self.key,)).fetchone()
            assert row is not None
            if not row[0]:
                holder = _holder(conn.execute(HOLDER_QUERY, _halves(self.key)).fetchone())
                raise LockHeld(self.where, holder)
        except BaseException:
            conn.close()
            raise
        with self._mutex:
            self._conn, self._backend_pid = conn, int(row[1])

    def wait_acquire(self, command: str, stop: threading.Event, poll_s: float = STANDBY_POLL_S) -> bool:
        """The standby: take the lock as soon as it is free; until then log who holds it (once, and
        again when the holder changes) and look every `poll_s` seconds, on one connection of its
        own, whether it is still held; a fresh lock session is opened only when it looks free, so
        the lock's `since` is the takeover. False when `stop` was set first."""
        probe: psycopg.Connection[Any] | None = None
        named: Any = object()
        try:
            while not stop.is_set():
                try:
                    if probe is None or probe.closed:
                        name = f"crmsync standby pid={os.getpid()} host={socket.gethostname()}"
                        probe = _connect(self.url, self.failover_s, name)
                    holder = _holder(probe.execute(HOLDER_QUERY, _halves(self.key)).fetchone())
                    if holder is None:
                        self.try_acquire(command)
                        return True
                except LockHeld as held:
                    holder = held.holder
                except psycopg.Error as exc:
                    if probe is not None:
                        probe.close()
                    probe, holder = None, {"error": str(exc).strip().splitlines()[0] if str(exc).strip() else "?"}
                who = {k: holder.get(k) for k in ("host", "pid", "command", "since", "error") if k in holder}
                if who != named:
                    log.info("standby: waiting for the active crmsync", holder=who, lock=self.where)
                    named = who
                stop.wait(poll_s)
            return False
        finally:
            if probe is not None:
                probe.close()

    def still_held(self) -> bool:
        """Whether this session holds the lock now, asked on the session itself: a closed, killed or
        unreachable session (any error) is a lost lock."""
        with self._mutex:
            if self._conn is None or self._backend_pid is None:
                return False
            try:
                row = self._conn.execute(HELD_BY_QUERY + " AND l.pid = pg_backend_pid()", self._params()).fetchone()
            except psycopg.Error:
                return False
            return bool(row and row[0])

    def guard(self) -> None:
        """Before a write batch: raise LockLost unless the lock is still held."""
        if not self.still_held():
            log.error("lock lost: stopping writes", lock=self.where)
            raise LockLost(self.where)

    def proof(self) -> LockProof | None:
        """What a cycle's process needs to check that this session still holds the lock."""
        if self._backend_pid is None:
            return None
        return LockProof(self.url, self.key, self._backend_pid, self.failover_s, self.where)

    def release(self) -> None:
        with self._mutex:
            conn, self._conn, self._backend_pid = self._conn, None, None
        if conn is None:
            return
        try:
            if not conn.closed:
                conn.execute("SELECT pg_advisory_unlock(%s)", (self.key,))
        except psycopg.Error:
            pass  # a session that is gone holds nothing any more
        finally:
            conn.close()

    def _params(self) -> dict[str, int]:
        return {**_halves(self.key), "pid": self._backend_pid or 0}


@dataclass(frozen=True)
class LockProof:
    """Picklable: handed to a cycle's process, which proves with it that the daemon's session
    (`backend_pid`) still holds the deployment's lock (`key`) before each write batch."""

    url: str
    key: int
    backend_pid: int
    failover_s: float
    where: str

    def holds(self, conn: psycopg.Connection[Any]) -> bool:
        row = conn.execute(HELD_BY_QUERY, {**_halves(self.key), "pid": self.backend_pid}).fetchone()
        return bool(row and row[0])

    def guard(self) -> Callable[[], None]:
        """A write guard for a cycle's process: a connection of its own, opened on first use; raises
        LockLost (and logs it) when the daemon's session no longer holds the lock or the server
        cannot be asked. Thread-safe (systems are written in parallel)."""
        mutex = threading.Lock()
        state: dict[str, psycopg.Connection[Any]] = {}

        def check() -> None:
            with mutex:
                try:
                    if "conn" not in state:
                        name = f"crmsync guard pid={os.getpid()} host={socket.gethostname()}"
                        state["conn"] = _connect(self.url, self.failover_s, name)
                    held = self.holds(state["conn"])
                except psycopg.Error:
                    held = False
            if not held:
                log.error("lock lost: stopping writes", lock=self.where, holder_backend_pid=self.backend_pid)
                raise LockLost(self.where)

        return check


def current_holder(
    url: str, schema: str | None = None, *, failover_s: float = DEFAULT_FAILOVER_S
) -> dict[str, Any] | None:
    """Who holds the deployment's lock right now, or None (for `status`)."""
    key = lock_key(database_of(url), schema or schema_of(url))
    with _connect(url, failover_s, f"crmsync status pid={os.getpid()} host={socket.gethostname()}") as conn:
        return _holder(conn.execute(HOLDER_QUERY, _halves(key)).fetchone())
