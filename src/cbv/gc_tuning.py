"""Garbage-collector settings for a process that holds thousands of sessions open."""

from __future__ import annotations

import gc

YOUNG_THRESHOLD = 25_000
# Young collections between two of the middle generation, and middle ones between two full
# ones: 3 x 33 young collections per full one, as Python's default 10 x 10.
MIDDLE_THRESHOLD = 3
OLD_THRESHOLD = 33


def tune_for_many_connections() -> None:
    """Sessions in flight keep their tasks, futures and buffers alive through many young
    collections, and each of those collections walks them all again. Freezing what start-up
    built and collecting young objects less often halves the collector's share of the CPU
    (measured with `python -m bench callout`, see docs/benchmarks.md).

    A young collection comes once 25,000 more objects are alive than at the last one
    (Python's default: 700), so fewer of a callout's short-lived objects are still there to
    be walked and promoted when it comes: the collector's share of a callout's CPU went from
    11% to 6-7% against 10,000. Higher costs the loop's latency: at 40,000 a middle
    collection with 10,000 callouts in flight took up to 0.08 s (a stall of 0.10 s, the
    budget), at 100,000 0.14 s; at 25,000 the longest took 0.03-0.05 s.

    Every survivor of a young collection is walked once more when the middle generation
    is collected, and with 10,000 callouts in flight nearly every young object survives:
    collecting the middle generation after 3 young collections instead of 10 walks a third
    as many at a time, for the same work in all (slow farm, 10,000 in flight: the longest
    collection 0.04-0.06 s, not 0.08-0.18 s)."""
    gc.freeze()
    gc.set_threshold(YOUNG_THRESHOLD, MIDDLE_THRESHOLD, OLD_THRESHOLD)
