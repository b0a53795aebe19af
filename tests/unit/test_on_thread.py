"""Work on a thread beside the caller (sync/state/on_thread.py): turns on one connection."""

from __future__ import annotations

import threading

from sync.state.on_thread import OnThread, Turns
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
