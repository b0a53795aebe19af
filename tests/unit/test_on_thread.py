"""Work on a thread beside the caller (sync/state/on_thread.py): turns on one connection."""

from __future__ import annotations

import sys
import threading

import pytest

from sync.state.on_thread import QUICK_SWITCH_S, OnThread, Turns, TurnsCancelled, quick_switches
from tests.kit import wait_until


def test_a_turn_of_mine_goes_before_the_other_threads_next_one() -> None:
    """The other thread takes turn after turn; once the caller asks, it gets the very next turn.
    (With a plain lock the releasing thread takes it again first, and the caller would wait for
    all fifty.)"""
    turns = Turns()
    taken: list[str] = []
    first = threading.Event()

    def theirs() -> None:
        for _ in range(50):
            with turns.theirs():
                taken.append("theirs")
                if not first.is_set():
                    first.set()
                    # hold the first turn until the caller is waiting for one
                    assert wait_until(lambda: turns._mine_waiting == 1, timeout=10)

    with OnThread(theirs, "test-turns") as other:
        assert first.wait(timeout=10)
        with turns.mine():
            taken.append("mine")
    other.result()
    assert taken.index("mine") == 1 and len(taken) == 51


def test_a_wait_for_my_turn_cut_short_leaves_the_other_thread_its_turns() -> None:
    """A second Ctrl-C while the caller waits for its turn: that wait ends, and the other thread
    still gets its turns (it waited for ever for a caller that had given up)."""
    turns = Turns()
    real = turns._state.wait_for

    def interrupted(*args: object, **kwargs: object) -> bool:
        raise KeyboardInterrupt

    turns._state.wait_for = interrupted  # type: ignore[method-assign]
    with pytest.raises(KeyboardInterrupt), turns.mine():
        pass
    turns._state.wait_for = real  # type: ignore[method-assign]
    taken: list[int] = []

    def theirs() -> None:
        for n in range(3):
            with turns.theirs():
                taken.append(n)

    other = OnThread(theirs, "test-turns")
    assert wait_until(lambda: len(taken) == 3, timeout=10)
    other.result()


def test_cancelled_turns_end_the_other_threads_work_and_leaving_waits_it_out() -> None:
    turns = Turns()
    taken: list[int] = []

    def theirs() -> None:
        for n in range(1_000_000):
            with turns.theirs():
                taken.append(n)

    with pytest.raises(TurnsCancelled):
        with OnThread(theirs, "test-turns") as other:
            assert wait_until(lambda: len(taken) > 0, timeout=10)
            turns.cancel()
        other.result()
    assert len(taken) < 1_000_000


def test_quick_switches_hold_while_any_caller_is_inside_and_then_put_the_interval_back() -> None:
    """The switch interval is the process's: two callers overlapping (a compute and a thread's own
    step) keep it quick until the last one leaves, and then it is what it was, after an error too."""
    before = sys.getswitchinterval()
    inner_entered, outer_may_leave = threading.Event(), threading.Event()
    seen: list[float] = []

    def other() -> None:
        with quick_switches():
            inner_entered.set()
            assert outer_may_leave.wait(10)
        seen.append(sys.getswitchinterval())  # the main thread is still inside

    with pytest.raises(RuntimeError), quick_switches():
        assert sys.getswitchinterval() == QUICK_SWITCH_S
        with OnThread(other, "test-switches") as thread:
            assert inner_entered.wait(10)
            outer_may_leave.set()
            thread.result()
        assert sys.getswitchinterval() == QUICK_SWITCH_S
        raise RuntimeError("the compute failed")
    assert seen == [QUICK_SWITCH_S]
    assert sys.getswitchinterval() == before != QUICK_SWITCH_S
