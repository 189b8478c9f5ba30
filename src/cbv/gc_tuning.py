"""Garbage-collector settings for a process that holds thousands of sessions open.

No asyncio here: the `cbv` command sets these before it knows whether it will run the
daemon, and importing asyncio is a third of its start-up (the clock is `cbv.gc_clock`)."""

from __future__ import annotations

import gc

YOUNG_THRESHOLD = 10_000
# A middle collection once the young ones since the last pass the middle threshold (after
# 2), a full one once the middle ones pass the old threshold: 2 x 50 young collections per
# full one, as Python's default 10 x 10.
MIDDLE_THRESHOLD = 1
OLD_THRESHOLD = 50


def tune_for_many_connections() -> None:
    """Sessions in flight keep their tasks, futures and buffers alive through many young
    collections, and each of those collections walks them all again. Freezing what start-up
    built and collecting young objects less often halves the collector's share of the CPU
    (measured with `python -m bench callout`, see docs/benchmarks.md).

    Young collections after 10,000 more live objects, not more: 25,000 cut the collector's
    share of a callout's CPU from 11% to 6-7% (`bench callout`), but a minute of mixed load
    on the daemon (tests/servers/test_soak.py) then grew its RSS by 20 MB before it levelled
    off; 40,000 and 100,000 also gave middle collections of 0.08 and 0.14 s with 10,000
    callouts in flight.

    Every survivor of a young collection is walked once more when the middle generation
    is collected, and with 10,000 callouts in flight nearly every young object survives:
    collecting the middle generation after 2 young collections instead of 11 walks a sixth
    as many at a time, for the same work in all. After 4, the longest collection with
    10,000 in flight was 0.04-0.06 s, not 0.08-0.18 s; after 2, the event loop's longest
    stall went from 0.09-0.12 s to 0.07-0.09 s (docs/benchmarks.md)."""
    gc.freeze()
    gc.set_threshold(YOUNG_THRESHOLD, MIDDLE_THRESHOLD, OLD_THRESHOLD)
