"""Python's cyclic garbage collector, set for a cycle: reading, mapping and computing records in bulk.

The default thresholds (700, 10, 10) run a young collection every 700 container allocations and,
every hundred of those, a full one, which walks every live object: the normalisers' caches, the
phone and country metadata, a bulk read's records. A page of vendor JSON is thousands of dicts.
Nearly all of a cycle's garbage is freed by reference counting (decoded payloads, mapped records
and rows hold no cycles), so those collections mostly walk live objects: at 6,000 people per system
`bench/extract.py` spent 13 % less CPU per record with the thresholds below (56.5 against 65.4 us);
(50,000, 20, 10), which still collects in full every ten million allocations, gained nothing.

With them a full collection waits for the cycle's end, and so may cyclic garbage that outlived a
young collection: a cycle process (the daemon's, or a one-off command) ends with the cycle, and a
daemon running cycles in its own process collects after each (`sync.scheduler.release_memory`).
The daemon's own process, which runs no cycle, keeps Python's defaults.
"""

from __future__ import annotations

import gc

THRESHOLDS = (50_000, 50, 1_000)


def tune_collector() -> None:
    """Set the thresholds for this process (`Cycle.run` does, before it reads anything)."""
    gc.set_threshold(*THRESHOLDS)
