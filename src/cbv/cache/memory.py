"""The in-process cache: tests, `--no-persist`, and the fallback while Redis is away."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Mapping

from cbv.address import Address
from cbv.cache.backend import Clock
from cbv.cache.records import CachedVerdict, CacheStats, Fact, unexpired


class MemoryBackend:
    """Bounded: beyond `max_entries` address records the least recently used go first."""

    def __init__(self, max_entries: int = 100_000, clock: Clock = time.time) -> None:
        self._max_entries = max_entries
        self._clock = clock
        self._records: OrderedDict[str, CachedVerdict] = OrderedDict()
        self._facts: dict[str, dict[str, Fact]] = {}

    @property
    def description(self) -> str:
        return "memory://"

    async def get(self, address: Address) -> CachedVerdict | None:
        return self.peek(address)

    def peek(self, address: Address) -> CachedVerdict | None:
        key = str(address)
        record = self._records.get(key)
        if record is None:
            return None
        if self._clock() >= record.expires_at:  # `is_expired`, without its call: every hit asks
            del self._records[key]
            return None
        self._records.move_to_end(key)
        return record

    async def put(self, record: CachedVerdict) -> None:
        if self._max_entries == 0:
            return
        key = record.address
        self._records[key] = record
        self._records.move_to_end(key)
        if len(self._records) > self._max_entries:
            self._records.popitem(last=False)

    async def facts(self, domain: str) -> dict[str, Fact]:
        return unexpired(self._facts.get(domain, {}), self._clock())

    async def learn(self, domain: str, facts: Mapping[str, Fact]) -> None:
        self._facts.setdefault(domain, {}).update(facts)

    async def purge_address(self, address: Address) -> int:
        return 0 if self._records.pop(str(address), None) is None else 1

    async def purge_domain(self, domain: str) -> int:
        suffix = f"@{domain}"
        doomed = [key for key in self._records if key.endswith(suffix)]
        for key in doomed:
            del self._records[key]
        self._facts.pop(domain, None)
        return len(doomed)

    async def purge_all(self) -> int:
        count = len(self._records)
        self._records.clear()
        self._facts.clear()
        return count

    async def stats(self) -> CacheStats:
        stats = CacheStats(backend=self.description)
        now = self._clock()
        async for record in self.export():
            stats.count(record, now)
        stats.domains_with_facts = sum(
            1 for facts in self._facts.values() if any(f.expires_at > now for f in facts.values())
        )
        return stats

    async def export(self) -> AsyncIterator[CachedVerdict]:
        now = self._clock()
        for record in list(self._records.values()):
            if not record.is_expired(now):
                yield record

    async def flush(self) -> None:
        """Nothing to make durable."""

    async def aclose(self) -> None:
        """Nothing to release."""
