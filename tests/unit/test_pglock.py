"""The deployment's advisory lock on a real PostgreSQL server (sync/pglock.py): one holder per
(database, schema), the holder named from its own session, a SIGKILLed holder's lock free at once,
a terminated session noticed by the holder's proof and by a cycle process's proof, and the standby's
wait."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from sync.lock import LockHeld, LockLost
from sync.pglock import AdvisoryLock, current_holder, keepalive_settings, lock_key
from tests.kit import wait_until
from tests.postgres import PostgresServer

HOLDER = """
import sys, threading
from sync.pglock import AdvisoryLock
lock = AdvisoryLock(sys.argv[1], sys.argv[2], failover_s=5)
lock.try_acquire("run")
print(lock.holder_backend_pid, flush=True)
threading.Event().wait()
"""


@pytest.fixture
def other_db(server: PostgresServer, db: str) -> Iterator[str]:
    """A second database of the test's own on the shared server, dropped after the test."""
    name = f"{db}_b"
    server.psql(f"CREATE DATABASE {name}")
    try:
        yield name
    finally:
        server.psql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def _lock(server: PostgresServer, database: str, schema: str | None = None) -> AdvisoryLock:
    return AdvisoryLock(server.url(database), schema, failover_s=5)


def test_the_key_is_a_stable_64_bit_hash_of_database_and_schema() -> None:
    key = lock_key("shop_a", "public")
    assert -(2**63) <= key < 2**63
    # SHA-256("crmsync:shop_a/public"), first eight bytes, signed: the same in every process and release
    assert key == lock_key("shop_a", None) == -4125682248852084956
    assert len({lock_key("shop_a", "public"), lock_key("shop_a", "eu"), lock_key("shop_b", "public")}) == 3
    # the separator keeps (database, schema) pairs apart that would concatenate alike
    assert lock_key("ab", "c") != lock_key("a", "bc")


def test_keepalives_notice_a_vanished_peer_within_failover() -> None:
    for failover in (2.0, 5.0, 30.0, 300.0):
        tcp = keepalive_settings(failover)
        noticed = tcp["keepalives_idle"] + tcp["keepalives_interval"] * tcp["keepalives_count"]
        assert noticed <= max(failover, 4) and tcp["tcp_user_timeout"] <= failover * 1000


def test_a_second_lock_of_one_deployment_is_refused_naming_the_holder(
    server: PostgresServer, db: str, other_db: str
) -> None:
    first = _lock(server, db)
    first.try_acquire("run")
    try:
        with pytest.raises(LockHeld) as refused:
            _lock(server, db).try_acquire("sync")
        holder = refused.value.holder
        assert holder["pid"] == os.getpid() and holder["command"] == "run"
        assert holder["host"] == socket.gethostname()[: 63 - len(f"crmsync run pid={os.getpid()} host=")]
        assert holder["backend_pid"] == first.holder_backend_pid
        since = datetime.fromisoformat(holder["since"])
        assert abs(datetime.now(UTC) - since) < timedelta(minutes=1)
        message = str(refused.value)
        assert f"pid {os.getpid()}" in message and "(run, since" in message and "advisory lock" in message
        assert current_holder(server.url(db)) == holder
        # another schema, another database: other deployments, free
        for other in (_lock(server, db, schema="eu"), _lock(server, other_db)):
            other.try_acquire("sync")
            assert other.still_held()
            other.release()
    finally:
        first.release()
    assert current_holder(server.url(db)) is None
    again = _lock(server, db)
    again.try_acquire("sync")
    again.release()


def test_a_sigkilled_holder_leaves_the_lock_free_at_once(server: PostgresServer, db: str) -> None:
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, server.url(db), "killed"], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None
        backend = int(holder.stdout.readline())
        found = current_holder(server.url(db), "killed")
        assert found is not None and found["pid"] == holder.pid and found["backend_pid"] == backend
        with pytest.raises(LockHeld):
            _lock(server, db, schema="killed").try_acquire("sync")
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(10)
    taker = _lock(server, db, schema="killed")
    started = datetime.now(UTC)

    def taken() -> bool:
        try:
            taker.try_acquire("sync")
        except LockHeld:
            return False
        return True

    assert wait_until(taken, timeout=5, interval=0.05)
    assert datetime.now(UTC) - started < timedelta(seconds=2)
    taker.release()


def test_a_terminated_session_is_a_lost_lock_for_the_holder_and_for_its_cycles(server: PostgresServer, db: str) -> None:
    lock = _lock(server, db, schema="terminated")
    lock.try_acquire("run")
    proof = lock.proof()
    assert proof is not None and proof.backend_pid == lock.holder_backend_pid and proof.key == lock.key
    child_guard = proof.guard()
    assert lock.still_held()
    lock.guard()
    child_guard()  # the daemon's session holds it: the cycle may write
    server.psql(f"SELECT pg_terminate_backend({lock.holder_backend_pid})", database=db)
    assert wait_until(lambda: not lock.still_held(), timeout=5)
    with pytest.raises(LockLost, match="lock lost: stopping writes"):
        lock.guard()
    with pytest.raises(LockLost):
        child_guard()
    lock.release()  # a gone session releases quietly
    assert not lock.still_held() and lock.proof() is None


def test_a_standby_waits_for_the_holder_and_takes_over_or_stops(server: PostgresServer, db: str) -> None:
    active = _lock(server, db, schema="standby")
    active.try_acquire("run")
    stop = threading.Event()
    waiting = _lock(server, db, schema="standby")
    result: list[bool] = []
    thread = threading.Thread(target=lambda: result.append(waiting.wait_acquire("run", stop, poll_s=0.1)))
    thread.start()
    try:
        # it waits while the active one holds the lock ...
        assert not wait_until(lambda: bool(result), timeout=0.5)
        active.release()
        # ... and takes it over once it is free
        assert wait_until(lambda: bool(result), timeout=5)
        assert result == [True] and waiting.still_held()
        holder = current_holder(server.url(db), "standby")
        assert holder is not None and holder["backend_pid"] == waiting.holder_backend_pid
    finally:
        stop.set()
        thread.join(10)
    # a standby stopped while it waits gives up
    stop = threading.Event()
    other = _lock(server, db, schema="standby")
    result.clear()
    thread = threading.Thread(target=lambda: result.append(other.wait_acquire("run", stop, poll_s=0.1)))
    thread.start()
    stop.set()
    thread.join(10)
    assert result == [False] and not other.still_held()
    waiting.release()
