"""What a backend on disk keeps in process memory: entries with a deadline, at most
`entries` of them, the least recently stored dropped first.

A look that finds one spares the trip to the disk's thread. The deadline bounds how
stale it can be when another process (the CLI) changed the file meanwhile.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import Generic, TypeVar

from cbv.cache.backend import Clock

V = TypeVar("V")


class MemoryTier(Generic[V]):
    def __init__(self, entries: int, ttl: float, clock: Clock) -> None:
        self._held: OrderedDict[str, tuple[float, V]] = OrderedDict()
        self._entries = entries
        self._ttl = ttl
        self._clock = clock
        self._enabled = entries > 0 and ttl > 0

    def __len__(self) -> int:
        return len(self._held)

    def get(self, key: str, now: float) -> V | None:
        """The value stored under `key` within `ttl` of `now`, else None."""
        held = self._held.get(key)
        if held is None:
            return None
        if now < held[0]:
            return held[1]
        del self._held[key]
        return None

    def put(self, key: str, value: V) -> None:
        if not self._enabled:
            return
        now = self._clock()
        self._held[key] = (now + self._ttl, value)
        self._held.move_to_end(key)
        if len(self._held) > self._entries:
            self._held.popitem(last=False)
        self._drop_stale(now)

    def _drop_stale(self, now: float) -> None:
        """Entries are in the order they were stored, so the stale ones are at the front:
        without this, a stream of fresh keys would keep `entries` of them in memory long
        after `ttl`."""
        while self._held:
            deadline, _ = next(iter(self._held.values()))
            if deadline > now:
                return
            self._held.popitem(last=False)

    def pop(self, key: str) -> None:
        self._held.pop(key, None)

    def drop_keys(self, doomed: Callable[[str], bool]) -> None:
        for key in [key for key in self._held if doomed(key)]:
            del self._held[key]

    def clear(self) -> None:
        self._held.clear()
