"""Garbage-collector settings for a process that holds thousands of sessions open."""

from __future__ import annotations

import gc

YOUNG_THRESHOLD = 10_000


def tune_for_many_connections() -> None:
    """Sessions in flight keep their tasks, futures and buffers alive through many young
    collections, and each of those collections walks them all again. Freezing what start-up
    built and collecting young objects less often halves the collector's share of the CPU
    (measured with `python -m bench callout`, see docs/benchmarks.md)."""
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, middle, old)
