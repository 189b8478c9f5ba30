"""For tests of the collector's clock: garbage only a collection frees, and thresholds no
allocation count reaches."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import weakref
from collections.abc import Iterator


class _Cycle:
    def __init__(self) -> None:
        self.itself = self


def cycle_freed() -> asyncio.Event:
    """Set once the collector frees an object that only a reference cycle keeps."""
    freed = asyncio.Event()
    weakref.finalize(_Cycle(), freed.set)
    return freed


@contextlib.contextmanager
def count_never_due() -> Iterator[None]:
    """Thresholds no allocation count reaches: only an explicit collection runs."""
    thresholds = gc.get_threshold()
    gc.set_threshold(1_000_000_000, 1_000, 1_000)
    try:
        yield
    finally:
        gc.set_threshold(*thresholds)
