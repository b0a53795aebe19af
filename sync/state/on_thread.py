"""One piece of state work on a thread of its own while the caller goes on.

What it is for: SQLite statements that do a lot in one step (an aggregate over a million orders,
an insert of 20,000 rows unpacked from one JSON array) run without holding the interpreter lock,
so a second core can do them while the main thread computes. A statement that returns one row
per step hands the lock back and forth on every row and gains nothing (measured,
bench/RESULTS.md), so only such work is put here."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Generic, TypeVar

T = TypeVar("T")


class OnThread(Generic[T]):
    """`work()` on a thread named `name`: `result()` waits for it and returns what it returned, or
    raises what it raised. Leaving the `with` block waits too, so no thread outlives the step that
    started it (a caller that failed first does not leave a transaction open behind it)."""

    def __init__(self, work: Callable[[], T], name: str) -> None:
        self._work = work
        self._value: T | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self._value = self._work()
        except BaseException as exc:  # handed to the caller by `result`
            self._error = exc

    def result(self) -> T:
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self._value  # type: ignore[return-value]

    def __enter__(self) -> OnThread[T]:
        return self

    def __exit__(self, *exc: object) -> None:
        self._thread.join()


class Turns:
    """Turns on one connection for the caller's thread (`mine`) and one thread it started
    (`theirs`), each turn one statement or batch: a turn of the caller's goes before the other
    thread's next one. A plain lock would not do: the thread that releases it takes it again
    before the waiting one wakes, so the caller would wait for all of the other's batches."""

    def __init__(self) -> None:
        self._state = threading.Condition()
        self._busy = False
        self._mine_waiting = 0

    @contextmanager
    def mine(self) -> Iterator[None]:
        with self._state:
            self._mine_waiting += 1
            self._state.wait_for(lambda: not self._busy)
            self._mine_waiting -= 1
            self._busy = True
        try:
            yield
        finally:
            self._release()

    @contextmanager
    def theirs(self) -> Iterator[None]:
        with self._state:
            self._state.wait_for(lambda: not self._busy and not self._mine_waiting)
            self._busy = True
        try:
            yield
        finally:
            self._release()

    def _release(self) -> None:
        with self._state:
            self._busy = False
            self._state.notify_all()
