"""The SQLite backend's memory tier holds only what was remembered within `memory_ttl`,
however many fresh addresses stream through it (found by the soak: RSS kept growing)."""

from __future__ import annotations

from pathlib import Path

from cbv.address import parse_address
from cbv.cache.sqlite import SQLiteBackend
from tests.cache.helpers import FakeClock, record


async def test_stale_entries_leave_the_memory_tier_as_fresh_ones_arrive(tmp_path: Path) -> None:
    clock = FakeClock()
    backend = SQLiteBackend(tmp_path / "cache.sqlite3", memory_entries=100_000, memory_ttl=30.0,
                            clock=clock)
    try:
        for n in range(1000):
            await backend.put(record(f"user{n}@fresh.test", now=clock()))
            clock.advance(1.0)
        assert len(backend._tier) <= 31
        await backend.flush()
        assert await backend.get(parse_address("user0@fresh.test")) is not None  # from the file
    finally:
        await backend.aclose()
