"""Memory tricks for the compute at scale: the cyclic collector paused, freed heap handed back."""

from __future__ import annotations

import ctypes
import gc
from collections.abc import Iterator
from contextlib import contextmanager, suppress


@contextmanager
def collector_paused() -> Iterator[None]:
    """Python's cyclic garbage collector off while the compute builds millions of small tuples and
    strings: none of them form cycles, yet each full collection walks all of them (over a quarter
    of the compute's time at a million contacts). One collection afterwards frees what is left,
    and the freed heap goes back to the system: a daemon idles between cycles at its resting size,
    not at the size of its last compute."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
        gc.collect()
        return_freed_memory()


def return_freed_memory() -> None:
    """glibc keeps freed heap pages for reuse; malloc_trim hands them back. Elsewhere a no-op."""
    with suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)
