"""Memory tricks for the compute at scale: the cyclic collector paused, freed heap handed back."""

from __future__ import annotations

import ctypes
import gc
from collections.abc import Iterator
from contextlib import contextmanager, suppress

# Container objects allocated (net) while the collector was off above which one full collection
# is worth its cost. A full collection walks the whole heap, not just the compute's objects: after
# a small compute in a big process (a test session running many cycles side by side) it cost a
# fifth of every cycle and freed next to nothing, which the regular collector does anyway.
WORTH_COLLECTING = 200_000


@contextmanager
def collector_paused() -> Iterator[None]:
    """Python's cyclic garbage collector off while the compute builds millions of small tuples and
    strings: none of them form cycles, yet each full collection walks all of them (over a quarter
    of the compute's time at a million contacts). After a large compute one collection frees what
    is left and the freed heap goes back to the system: a daemon idles between cycles at its
    resting size, not at the size of its last compute."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        # Only the outermost pause collects: a cycle pauses around its compute and its plan, each
        # of which pauses too, and one full collection at a million-record heap costs ~0.16 s.
        if was_enabled:
            gc.enable()
            if gc.get_count()[0] >= WORTH_COLLECTING:
                gc.collect()
                return_freed_memory()


def return_freed_memory() -> None:
    """glibc keeps freed heap pages for reuse; malloc_trim hands them back. Elsewhere a no-op."""
    with suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)
