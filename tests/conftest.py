"""Fixtures: real sandboxes on 127.0.0.1, started and stopped by each test; a real PostgreSQL
server per test session (per xdist worker), with a fresh database for each test that asks; the
state backend a test runs on (`backend`: "sqlite" or "postgresql"); and, for the whole session, the
secrets scan over everything crmsync printed or wrote (tests/chaos/secrets.py)."""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import IO, Any

import pytest
from hypothesis import settings

from sync.demo import demo_data
from sync.log import setup_logging
from sync.sandboxes import RunningSandbox, start_sandboxes, stop_sandboxes
from tests.kit import Sandboxes, capture_output_to
from tests.postgres import PostgresServer, postgres_server

# No property test has a time limit: hypothesis's default (200 ms an example) fails a test when a
# loaded CI host is slow, which says nothing of the code. Speed is bench/'s business.
settings.register_profile("crmsync", deadline=None)
settings.load_profile("crmsync")


def pytest_configure(config: pytest.Config) -> None:
    """The chaos results start empty once per run: in the controlling process, not in each worker."""
    if not hasattr(config, "workerinput"):
        from tests.chaos import report

        report.reset()


@pytest.fixture(scope="session", autouse=True)
def no_secret_leaves_crmsync(tmp_path_factory: pytest.TempPathFactory) -> Iterator[IO[str]]:
    """Every configured secret (the sandboxes' credentials and every one a test registers with
    `tests.kit.secret`) against everything crmsync printed or wrote during the session: a single
    hit fails the run."""
    from tests.chaos import report
    from tests.chaos.secrets import all_secrets, scan

    started = time.time()
    base = tmp_path_factory.getbasetemp()
    capture_output_to(base / "crmsync-output")
    with open(base / "crmsync-output" / "in-process.log", "a", encoding="utf-8") as log:
        setup_logging("debug", True, stream=log)  # before any session fixture runs a cycle
        yield log
    files, hits = scan([base], started)
    # Each test worker (`pytest -n`) scans what its own tests made, and adds its counts.
    report.add_up("secrets", {"hits": len(hits), "files": files, "workers": 1})
    report.record("secrets_searched", len(all_secrets()))
    assert not hits, "secrets found in crmsync's output:\n" + "\n".join(str(hit) for hit in hits)


@pytest.fixture(autouse=True)
def crmsync_logs_at_debug(no_secret_leaves_crmsync: IO[str]) -> None:
    """crmsync's logging inside the test process, at debug level, into the scanned log."""
    setup_logging("debug", True, stream=no_secret_leaves_crmsync)


@pytest.fixture(autouse=True)
def no_tokens_from_an_earlier_test() -> None:
    """Each test starts with the process's token vault empty, as a new crmsync process does."""
    from connectors.auth import TOKENS

    TOKENS.clear()


@pytest.fixture
def start_sandboxes_fixture() -> Iterator[Callable[..., Sandboxes]]:
    started: list[list[RunningSandbox]] = []

    def start(data: Mapping[str, Any], **kwargs: Any) -> Sandboxes:
        running = start_sandboxes(data, **kwargs)
        started.append(running)
        return Sandboxes(running)

    yield start
    for running in started:
        stop_sandboxes(running)


@pytest.fixture(scope="session")
def small_data() -> dict[str, dict[str, Any]]:
    """40 synthetic people over every sandbox, fixed seed."""
    return demo_data(40, seed=7)


@pytest.fixture
def sandboxes(start_sandboxes_fixture: Callable[..., Sandboxes], small_data: dict[str, Any]) -> Sandboxes:
    return start_sandboxes_fixture(small_data, time_scale=50)


@pytest.fixture(scope="session")
def postgres_server_session() -> Iterator[PostgresServer]:
    """One PostgreSQL server for the session (each xdist worker starts its own), started on first
    use. A server that cannot start fails the test that asked, saying why (never a skip)."""
    with postgres_server() as server:
        yield server


_NAMES = itertools.count(1)


def _admin(server: PostgresServer, sql: str) -> None:
    import psycopg

    with psycopg.connect(server.url("postgres", driver="postgresql"), autocommit=True) as conn:
        conn.execute(sql)


@pytest.fixture
def postgres_url(postgres_server_session: PostgresServer) -> Iterator[str]:
    """The SQLAlchemy URL of a new, empty database of its own for this test, dropped after it."""
    name = f"t_{os.getpid()}_{next(_NAMES)}"
    _admin(postgres_server_session, f"CREATE DATABASE {name}")
    yield postgres_server_session.url(name)
    _admin(postgres_server_session, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture
def server(postgres_server_session: PostgresServer) -> PostgresServer:
    """The session's PostgreSQL server, for tests that talk to it by hand (psql, pg_dump, locks):
    shared with other tests, so each test works in its own database (`db`)."""
    return postgres_server_session


@pytest.fixture
def db(postgres_url: str) -> str:
    """The name of the test's own new, empty database on the shared server."""
    from sqlalchemy.engine import make_url

    name = make_url(postgres_url).database
    assert name
    return name


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest) -> str:
    """The state backend a test runs on: every state test runs on both."""
    return str(request.param)


@pytest.fixture
def new_state_url(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[], str]:
    """Each call, the URL of another new, empty state on the test's backend: a SQLite file in the
    test's folder, or a schema of its own in the test's PostgreSQL database."""
    from sync.state.sql import with_schema

    count = itertools.count(1)
    if backend == "sqlite":
        return lambda: f"sqlite:///{tmp_path / f'state{next(count)}.db'}"
    database = request.getfixturevalue("postgres_url")
    return lambda: with_schema(database, f"state{next(count)}")


@pytest.fixture
def state_url(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The URL of a new, empty state on the test's backend: `state.db` in the test's folder, or the
    test's own PostgreSQL database."""
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / 'state.db'}"
    return str(request.getfixturevalue("postgres_url"))
