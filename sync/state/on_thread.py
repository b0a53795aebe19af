"""One piece of state work on a thread of its own while the caller goes on.

What it is for: SQLite statements that do a lot in one step (an aggregate over a million orders,
an insert of 20,000 rows unpacked from one JSON array) run without holding the interpreter lock,
so a second core can do them while the main thread computes. A statement that returns one row
per step hands the lock back and forth on every row and gains nothing (measured,
bench/RESULTS.md), so only such work is put here."""

from __future__ import annotations

import threading
from collections.abc import Callable
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
