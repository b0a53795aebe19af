"""One piece of state work on a thread of its own while the caller goes on.

What it is for: SQLite statements that do a lot in one step (an aggregate over a million orders,
an insert of 20,000 rows unpacked from one JSON array) run without holding the interpreter lock,
so a second core can do them while the main thread computes. A statement that returns one row
per step hands the lock back and forth on every row and gains nothing (measured,
bench/RESULTS.md), so only such work is put here."""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Generic, TypeVar

T = TypeVar("T")

# The interpreter's switch interval while state work runs on threads: a thread that wants the
# interpreter lock back waits up to this long for the holder to let go, each time it wants it.
# At Python's default 5 ms, an order reader's 0.07 s of decoding took 1.2 s of wall time while
# the main thread resolved identities, and every turn of the save's writes thread waited as long
# (bench/RESULTS.md, issue 17's eleventh stop). Only a thread that waits pays for the switches.
QUICK_SWITCH_S = 0.0005


class CallersInside:
    """How many callers, on any thread, are inside `with callers():` at once. A subclass acts
    when the first one enters (`first_entered`) and when the last one leaves (`last_left`); both
    run under the count's lock, so an entry and a leaving never cross."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._inside = 0

    @property
    def any(self) -> bool:
        return self._inside > 0

    def first_entered(self) -> None:
        """Called as the count goes from 0 to 1."""

    def last_left(self) -> None:
        """Called as the count goes back to 0, also when the block raised."""

    @contextmanager
    def __call__(self) -> Iterator[None]:
        with self._lock:
            if not self._inside:
                self.first_entered()
            self._inside += 1
        try:
            yield
        finally:
            with self._lock:
                self._inside -= 1
                if not self._inside:
                    self.last_left()


class _QuickSwitches(CallersInside):
    """`quick_switches()`: the switch interval at QUICK_SWITCH_S while any caller is inside one,
    put back as it was when the last one leaves (the interval is the process's, not a thread's)."""

    def __init__(self) -> None:
        super().__init__()
        self._before = 0.0

    def first_entered(self) -> None:
        self._before = sys.getswitchinterval()
        sys.setswitchinterval(QUICK_SWITCH_S)

    def last_left(self) -> None:
        sys.setswitchinterval(self._before)


quick_switches = _QuickSwitches()


class OnThread(Generic[T]):
    """`work()` on a thread named `name`: `result()` waits for it and returns what it returned, or
    raises what it raised. Leaving the `with` block waits too, so no thread outlives the step that
    started it (a caller that failed first does not leave a transaction open behind it), and that
    wait is not cut short by an interrupt (`wait_out`)."""

    def __init__(self, work: Callable[[], T], name: str) -> None:
        self._work = work
        self._value: T | None = None
        self._error: BaseException | None = None
        # Waited on instead of `Thread.join`: on Python 3.11 an interrupted join marks the thread
        # as stopped, and every later join returns while it still runs.
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self._value = self._work()
        except BaseException as exc:  # handed to the caller by `result`
            self._error = exc
        finally:
            self._done.set()

    @property
    def failure(self) -> BaseException | None:
        """What the work raised, once it has ended (else None)."""
        return self._error if self._done.is_set() else None

    def wait_out(self) -> None:
        """Wait until the work has ended, whatever interrupts the wait (a second Ctrl-C): work that
        writes in the caller's transaction must be over before that transaction ends, committed or
        rolled back. An interrupt that came meanwhile is raised once it has."""
        interrupted: BaseException | None = None
        while not self._done.is_set():
            try:
                self._done.wait()
            except BaseException as exc:  # raised below, once the work is over
                interrupted = exc
        if interrupted is not None:
            raise interrupted

    def result(self) -> T:
        self._done.wait()
        if self._error is not None:
            raise self._error
        return self._value  # type: ignore[return-value]

    def __enter__(self) -> OnThread[T]:
        return self

    def __exit__(self, kind: type[BaseException] | None, *exc: object) -> None:
        try:
            self.wait_out()
        except BaseException:
            if kind is None:
                raise  # an interrupt while waiting, and nothing else is under way
            # else the exception that ended the block goes on: it says what went wrong first


class TurnsCancelled(Exception):
    """The caller stopped taking turns (it failed): the other thread's work ends."""


class Turns:
    """Turns on one connection for the caller's thread (`mine`) and one thread it started
    (`theirs`), each turn one statement or batch: a turn of the caller's goes before the other
    thread's next one. A plain lock would not do: the thread that releases it takes it again
    before the waiting one wakes, so the caller would wait for all of the other's batches.
    `cancel`: the other thread's next turn raises TurnsCancelled instead."""

    def __init__(self) -> None:
        self._state = threading.Condition()
        self._owner: int | None = None  # the thread whose turn it is
        self._mine_waiting = 0
        self._cancelled = False

    @contextmanager
    def mine(self) -> Iterator[None]:
        try:
            with self._state:
                self._mine_waiting += 1
                try:
                    self._state.wait_for(lambda: self._owner is None)
                finally:  # also when the wait is interrupted: else theirs would wait for ever
                    self._mine_waiting -= 1
                    self._state.notify_all()
                self._owner = threading.get_ident()
            yield
        finally:
            self._release()

    @contextmanager
    def theirs(self) -> Iterator[None]:
        try:
            with self._state:
                self._state.wait_for(lambda: self._cancelled or (self._owner is None and not self._mine_waiting))
                if self._cancelled:
                    raise TurnsCancelled("the caller stopped taking turns")
                self._owner = threading.get_ident()
            yield
        finally:
            self._release()

    def cancel(self) -> None:
        with self._state:
            self._cancelled = True
            self._state.notify_all()

    def _release(self) -> None:
        """End this thread's turn, if it has one (a wait cut short took none)."""
        with self._state:
            if self._owner == threading.get_ident():
                self._owner = None
                self._state.notify_all()
