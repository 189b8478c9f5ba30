"""The daemon's collector clock: young objects collected every few milliseconds, whatever
CPython's allocation count says, the older generations on its schedule."""

from __future__ import annotations

import asyncio
import gc
import sys
import time

from cbv.gc_tuning import MIDDLE_THRESHOLD, OLD_THRESHOLD

COLLECT_EVERY = 0.02  # seconds between collections on the clock while objects come and go
IDLE_EVERY = 1.0  # seconds between looks, at most, while none are made or freed
HEAP_GROWTH = 1.25  # of the heap after the last full collection, before the next
FULL_EVERY = 60.0  # seconds between full collections on the clock, at least


class HeapGrowth:
    """When the clock may walk the whole heap: as CPython's rule has it, not before the
    long-lived objects have grown by a quarter since the last full collection (Python code
    cannot read CPython's count of them; the blocks its allocator holds stand in), and
    then not more than once in FULL_EVERY seconds. With 10,000 callouts in flight a full
    collection holds the event loop for 0.28-0.38 s; the young ones on the clock came due
    often enough to make the count of middle ones run over every few seconds while the
    heap grew to hold them all."""

    __slots__ = ("_at_most_every", "_blocks", "_full_collections", "_since")

    def __init__(self, at_most_every: float = FULL_EVERY) -> None:
        self._at_most_every = at_most_every
        self._blocks = sys.getallocatedblocks()
        self._full_collections = gc.get_stats()[2]["collections"]
        self._since = time.monotonic()

    def grown(self) -> bool:
        """Since the last full collection, whoever ran it."""
        full_collections = gc.get_stats()[2]["collections"]
        if full_collections != self._full_collections:
            self._full_collections = full_collections
            self._blocks = sys.getallocatedblocks()
            self._since = time.monotonic()
            return False
        return (time.monotonic() - self._since >= self._at_most_every
                and sys.getallocatedblocks() > self._blocks * HEAP_GROWTH)


def generation_due(heap: HeapGrowth) -> int:
    """The generation CPython's own schedule would collect next: the oldest whose count of
    collections of the one below has passed its threshold (and, for the oldest, once the
    heap has grown)."""
    _, middle, old = gc.get_count()
    if old > OLD_THRESHOLD and heap.grown():
        return 2
    if middle > MIDDLE_THRESHOLD:
        return 1
    return 0


async def collect_on_a_clock() -> None:
    """Young collections every COLLECT_EVERY seconds, whatever the count says.

    CPython collects the young generation once allocations less deallocations pass the
    threshold, and the deallocations of old objects count too. With 10,000 callouts in
    flight each session step frees what its step before made (old by then) as it makes
    new objects, so the count hardly moves while the young generation fills: it held
    50,000-100,000 objects when collected, and its collections held the event loop for
    25-75 ms (docs/benchmarks.md). Collected on a clock, it holds what 20 ms made.

    A tick after which CPython collected on its own has nothing to add: where objects
    die young the count comes due every few milliseconds, and collecting on the clock as
    well cost the callout benchmark 2-4 points of CPU more in the collector. The middle
    and old generations follow on CPython's schedule. While nothing is made or freed the
    clock slows down to IDLE_EVERY, so an idle daemon is not woken 50 times a second."""
    every = COLLECT_EVERY
    seen = gc.get_count()
    collections = _collections()
    heap = HeapGrowth()
    while True:
        await asyncio.sleep(every)
        counts = gc.get_count()
        if counts == seen:
            every = min(2 * every, IDLE_EVERY)
            continue
        every = COLLECT_EVERY
        if _collections() == collections:
            gc.collect(generation_due(heap))
        seen = gc.get_count()
        collections = _collections()


def _collections() -> int:
    """Collections of any generation so far, whoever ran them."""
    return sum(generation["collections"] for generation in gc.get_stats())
