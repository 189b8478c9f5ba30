"""The one interface every cache backend (memory, SQLite, Redis) offers the engine and the CLI."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping
from typing import Protocol

from cbv.address import Address
from cbv.cache.records import CachedVerdict, CacheStats, Fact

Clock = Callable[[], float]  # epoch seconds; tests pass a fake one to travel in time


class CacheError(Exception):
    """The cache cannot be opened or reached; the message is one line for the user."""


class CacheBackend(Protocol):
    @property
    def description(self) -> str:
        """Where the cache lives, for logs and `cbv cache stats` (no secrets)."""
        ...

    async def get(self, address: Address) -> CachedVerdict | None:
        """The record, or None when absent or expired."""
        ...

    def peek(self, address: Address) -> CachedVerdict | None:
        """The record if it is held in this process, with no I/O and no waiting; None when
        it is not, or only a look elsewhere could tell (then `get` is the answer)."""
        ...

    async def put(self, record: CachedVerdict) -> None: ...

    async def facts(self, domain: str) -> dict[str, Fact]:
        """Unexpired facts about `domain`'s mail exchangers, by name."""
        ...

    async def learn(self, domain: str, facts: Mapping[str, Fact]) -> None:
        """Store these facts, leaving the domain's other facts alone."""
        ...

    async def purge_address(self, address: Address) -> int: ...

    async def purge_domain(self, domain: str) -> int:
        """Drop the domain's address records and facts; returns the records dropped."""
        ...

    async def purge_all(self) -> int: ...

    async def stats(self) -> CacheStats: ...

    def export(self) -> AsyncIterator[CachedVerdict]:
        """Every unexpired address record, for `cbv cache export`."""
        ...

    async def flush(self) -> None:
        """Return once everything put so far is durable."""
        ...

    async def aclose(self) -> None: ...
