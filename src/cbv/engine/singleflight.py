"""Single-flight: concurrent requests for one address share one callout.

In one process, the first request leads and the rest await its future. Across
processes sharing Redis, the leader also takes a lock with an expiry; a process
that finds the lock taken waits for it to go, then reads the verdict the holder
stored in the cache.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

from cbv.address import Address
from cbv.engine.polling import poll_until
from cbv.model import Verdict

if TYPE_CHECKING:  # redis-py is imported only where a Redis URL is opened
    from cbv.cache.redis_link import RedisLink

RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


class LocalFlights:
    """The callouts in flight in this process, by address: each request awaits a future of
    its own, so one that goes away cancels only its own (no `asyncio.shield` per request)."""

    def __init__(self) -> None:
        self._flights: dict[Address, list[asyncio.Future[Verdict]]] = {}

    def is_flying(self, address: Address) -> bool:
        return address in self._flights

    def join(self, address: Address) -> asyncio.Future[Verdict] | None:
        waiting = self._flights.get(address)
        return None if waiting is None else _waiter(waiting)

    def lead(self, address: Address) -> asyncio.Future[Verdict]:
        waiting: list[asyncio.Future[Verdict]] = []
        self._flights[address] = waiting
        return _waiter(waiting)

    def land(self, address: Address, verdict: Verdict) -> None:
        for future in self._flights.pop(address):
            if not future.done():
                future.set_result(verdict)

    def fail(self, address: Address, error: BaseException) -> None:
        for future in self._flights.pop(address):
            if future.done():
                continue
            if isinstance(error, asyncio.CancelledError):
                future.cancel()
            else:
                future.set_exception(error)
                future.exception()  # the callers see it; no "never retrieved" warning without them


def _waiter(waiting: list[asyncio.Future[Verdict]]) -> asyncio.Future[Verdict]:
    future: asyncio.Future[Verdict] = asyncio.get_running_loop().create_future()
    waiting.append(future)
    return future


class SharedLocks(Protocol):
    @property
    def spans_processes(self) -> bool:
        """Whether other processes call out for the same cache: then a verdict may land in
        it from elsewhere between a request's look and its claim."""
        ...

    async def claim(self, addresses: Sequence[Address]) -> tuple[list[Address], list[Address]]:
        """(claimed by this process, being verified by another one)."""
        ...

    async def release(self, addresses: Sequence[Address]) -> None: ...

    async def wait(self, address: Address) -> None:
        """Return once the other process lets go of `address` (or its lock expires)."""
        ...


class ProcessLocks:
    """No other process shares the cache's callouts: every claim succeeds."""

    spans_processes = False

    async def claim(self, addresses: Sequence[Address]) -> tuple[list[Address], list[Address]]:
        claimed = addresses if isinstance(addresses, list) else list(addresses)  # no copy kept
        return claimed, []

    async def release(self, addresses: Sequence[Address]) -> None:
        """Nothing was locked."""

    async def wait(self, address: Address) -> None:
        """Nothing to wait for."""


class RedisLocks:
    """Locks with an expiry (`lease`), so a process that dies mid-callout blocks no one for
    long. While Redis is down every claim succeeds: the fallback is per-process flights."""

    def __init__(self, link: RedisLink, lease: float) -> None:
        self._link = link
        self._keys = link.keys
        self._lease_ms = int(lease * 1000)
        self._lease = lease
        self._token = secrets.token_hex(12)
        self._release = link.client.register_script(RELEASE)

    spans_processes = True

    def _key(self, address: Address) -> str:
        return self._keys.lock(address.domain, str(address))

    async def claim(self, addresses: Sequence[Address]) -> tuple[list[Address], list[Address]]:
        async def in_redis() -> tuple[list[Address], list[Address]]:
            pipe = self._link.client.pipeline(transaction=False)
            for address in addresses:
                pipe.set(self._key(address), self._token, nx=True, px=self._lease_ms)
            taken = await pipe.execute()
            claimed = [a for a, ok in zip(addresses, taken, strict=True) if ok]
            elsewhere = [a for a, ok in zip(addresses, taken, strict=True) if not ok]
            return claimed, elsewhere

        async def everything_here() -> tuple[list[Address], list[Address]]:
            return list(addresses), []

        return await self._link.call(in_redis, everything_here)

    async def release(self, addresses: Sequence[Address]) -> None:
        async def in_redis() -> None:
            for address in addresses:  # one connection per call, as RedisLink counts them
                await self._release(keys=[self._key(address)], args=[self._token])

        async def nothing() -> None:
            """The locks expire by themselves."""

        if addresses:
            await self._link.call(in_redis, nothing)

    async def wait(self, address: Address) -> None:
        """Until the lock goes or the holder's verdict is there, whichever is seen first."""
        lock = self._key(address)
        record = self._keys.record(address.domain, str(address))

        async def held() -> bool:
            pipe = self._link.client.pipeline(transaction=False)
            pipe.exists(lock)
            pipe.exists(record)
            locked, landed = await pipe.execute()
            return bool(locked) and not landed

        async def unknown() -> bool:
            return False

        await poll_until(lambda: self._link.call(held, unknown), lambda busy: not busy,
                         self._lease)
