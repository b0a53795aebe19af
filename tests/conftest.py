"""Fixtures: real sandboxes on 127.0.0.1, started and stopped by each test."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

import pytest

from sync.demo import demo_data
from sync.sandboxes import RunningSandbox, start_sandboxes, stop_sandboxes
from tests.kit import Sandboxes


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
    """40 synthetic people over both shops, fixed seed."""
    return demo_data(40, seed=7)


@pytest.fixture
def sandboxes(start_sandboxes_fixture: Callable[..., Sandboxes], small_data: dict[str, Any]) -> Sandboxes:
    return start_sandboxes_fixture(small_data, time_scale=50)
