"""Per-domain callout budgets, per-MX-host and global caps on callouts in flight.

The domain budget is GCRA (engine/gcra.py). With Redis the same arithmetic runs in a
script on Redis's clock, and the caps are sorted sets of holders with leases; while
Redis is down the process falls back to its own. Budgets per MX address, network and
provider are in engine/budgets.py, the refusal cooldown in engine/cooldown.py; the
gate in engine/gate.py puts them in front of each connection.
"""
from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING, Protocol

from cbv.config import LimitsConfig
from cbv.engine.budgets import DestinationBudget, LocalDestinationBudget, RedisDestinationBudget
from cbv.engine.cooldown import Cooldown, LocalCooldown, RedisCooldown
from cbv.engine.first_look import FirstLook, LookInTurn, RedisLook
from cbv.engine.gcra import Gcra, pruned
from cbv.engine.polling import poll_until

if TYPE_CHECKING:  # redis-py is imported only where a Redis URL is opened
    from cbv.cache.redis_link import RedisLink

PRUNE_ABOVE = 10_000
GLOBAL_POOL = "callouts"

RESERVE = """
local now = redis.call('TIME')
now = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local wait = tat - tonumber(ARGV[2]) - now
if wait > tonumber(ARGV[3]) then return -1 end
local next_tat = tat + tonumber(ARGV[1])
redis.call('SET', KEYS[1], string.format('%.0f', next_tat), 'PX',
           string.format('%.0f', next_tat - now + 1000))
if wait < 0 then wait = 0 end
return wait
"""

ACQUIRE = """
local now = redis.call('TIME')
now = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[2]) then
  redis.call('ZADD', KEYS[1], string.format('%.0f', now + tonumber(ARGV[3])), ARGV[1])
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
  return 1
end
return 0
"""


class DomainBudget(Protocol):
    async def reserve(self, domain: str) -> float | None:
        """Seconds to wait before calling out to `domain`, or None when its budget is spent."""
        ...


class SlotPool(Protocol):
    def hold(self, name: str) -> AbstractAsyncContextManager[bool]:
        """Hold one of the slots named `name`; yields False if none came free in time."""
        ...


class LocalBudget:
    def __init__(self, config: LimitsConfig) -> None:
        self._config = config
        self._arrivals: dict[str, float] = {}

    async def reserve(self, domain: str) -> float | None:
        config = self._config
        now = time.monotonic()
        gcra = Gcra.per_minute(config.domain_rate(domain), config.domain_burst)
        reserved = gcra.reserve(self._arrivals.get(domain, now), now, config.max_wait)
        if reserved is None:
            return None
        wait, self._arrivals[domain] = reserved
        if len(self._arrivals) > PRUNE_ABOVE:
            self._arrivals = pruned(self._arrivals, now)
        return wait


class LocalSlotPool:
    def __init__(self, capacity: int, max_wait: float) -> None:
        self._capacity = capacity
        self._max_wait = max_wait
        self._semaphores: dict[str, asyncio.Semaphore] = {}
        self._users: dict[str, int] = {}

    def hold(self, name: str) -> _LocalHold:
        return _LocalHold(self, name)

    def _join(self, name: str) -> asyncio.Semaphore:
        self._users[name] = self._users.get(name, 0) + 1
        semaphore = self._semaphores.get(name)
        if semaphore is None:
            semaphore = self._semaphores[name] = asyncio.Semaphore(self._capacity)
        return semaphore

    def _leave(self, name: str) -> None:
        self._users[name] -= 1
        if not self._users[name]:
            del self._users[name], self._semaphores[name]

    async def _acquire(self, semaphore: asyncio.Semaphore) -> bool:
        """A free slot is taken at once: no timer is armed for a wait that cannot happen."""
        if not semaphore.locked():
            await semaphore.acquire()  # returns without yielding: nobody waits before us
            return True
        try:
            async with asyncio.timeout(self._max_wait):
                await semaphore.acquire()
        except TimeoutError:
            return False
        return True


class _LocalHold:
    """One hold of a `LocalSlotPool` slot; a class, so a callout builds no generator for it."""

    __slots__ = ("_acquired", "_name", "_pool", "_semaphore")

    def __init__(self, pool: LocalSlotPool, name: str) -> None:
        self._pool = pool
        self._name = name
        self._acquired = False

    async def __aenter__(self) -> bool:
        self._semaphore = self._pool._join(self._name)
        try:
            self._acquired = await self._pool._acquire(self._semaphore)
        except BaseException:
            self._pool._leave(self._name)
            raise
        return self._acquired

    async def __aexit__(self, *exc_info: object) -> None:
        if self._acquired:
            self._semaphore.release()
        self._pool._leave(self._name)


class RedisBudget:
    def __init__(self, link: RedisLink, config: LimitsConfig, local: LocalBudget) -> None:
        self._link = link
        self._config = config
        self._local = local
        self._reserve = link.client.register_script(RESERVE)

    async def reserve(self, domain: str) -> float | None:
        config = self._config
        gcra = Gcra.per_minute(config.domain_rate(domain), config.domain_burst)

        async def in_redis() -> float | None:
            wait_ms = int(
                await self._reserve(
                    keys=[self._link.keys.rate(domain)],
                    args=[
                        round(gcra.interval * 1000),
                        round(gcra.tolerance * 1000),
                        round(config.max_wait * 1000),
                    ],
                )
            )
            return None if wait_ms < 0 else wait_ms / 1000

        return await self._link.call(in_redis, lambda: self._local.reserve(domain))


class _Held(Enum):
    SHARED = "shared"
    BUSY = "busy"
    LOCAL = "local"


class RedisSlotPool:
    """Holders are members of a sorted set scored by lease expiry, so slots held by a
    process that died come free when the lease ends."""

    def __init__(
        self, link: RedisLink, capacity: int, max_wait: float, lease: float, local: LocalSlotPool
    ) -> None:
        self._link = link
        self._capacity = capacity
        self._max_wait = max_wait
        self._lease_ms = int(lease * 1000)
        self._local = local
        self._acquire_script = link.client.register_script(ACQUIRE)

    async def _acquire(self, key: str, token: str) -> _Held:
        async def in_redis() -> _Held:
            taken = await self._acquire_script(
                keys=[key], args=[token, self._capacity, self._lease_ms]
            )
            return _Held.SHARED if taken else _Held.BUSY

        async def locally() -> _Held:
            return _Held.LOCAL

        return await poll_until(lambda: self._link.call(in_redis, locally),
                                lambda held: held is not _Held.BUSY, self._max_wait)

    @asynccontextmanager
    async def hold(self, name: str) -> AsyncIterator[bool]:
        key = self._link.keys.slots(name)
        token = secrets.token_hex(12)
        held = await self._acquire(key, token)
        if held is _Held.LOCAL:
            async with self._local.hold(name) as acquired:
                yield acquired
            return
        try:
            yield held is _Held.SHARED
        finally:
            if held is _Held.SHARED:
                await self._release(key, token)

    async def _release(self, key: str, token: str) -> None:
        async def in_redis() -> None:
            await self._link.client.zrem(key, token)

        async def expire_by_itself() -> None:
            """The lease frees the slot."""

        await self._link.call(in_redis, expire_by_itself)


@dataclass(frozen=True, slots=True)
class CalloutLimits:
    budget: DomainBudget
    hosts: SlotPool  # one pool per MX host address
    in_flight: SlotPool  # one pool, GLOBAL_POOL, for every callout
    destinations: DestinationBudget  # per MX address, network and provider
    cooldown: Cooldown  # MX addresses that refused the verifier
    first_look: FirstLook  # the cooldown, then the destination budgets, before a session

    @classmethod
    def build(cls, config: LimitsConfig, link: RedisLink | None, lease: float,
              clock: Callable[[], float] = time.time) -> CalloutLimits:
        """`clock` (epoch seconds) times the local cooldowns, as it does cache lifetimes."""
        budget = LocalBudget(config)
        hosts = LocalSlotPool(config.mx_concurrency, config.max_wait)
        in_flight = LocalSlotPool(config.max_in_flight, config.max_wait)
        destinations = LocalDestinationBudget(config.max_wait)
        cooldown = LocalCooldown(config.refusal_cooldown, clock)
        if link is None:
            return cls(budget, hosts, in_flight, destinations, cooldown,
                       LookInTurn(cooldown, destinations))
        shared_destinations = RedisDestinationBudget(link, config.max_wait, destinations)
        shared_cooldown = RedisCooldown(link, config.refusal_cooldown, cooldown)
        first_look: FirstLook = (
            LookInTurn(shared_cooldown, shared_destinations)
            if link.is_cluster
            else RedisLook(link, shared_destinations, LookInTurn(cooldown, destinations)))
        return cls(
            RedisBudget(link, config, budget),
            RedisSlotPool(link, config.mx_concurrency, config.max_wait, lease, hosts),
            RedisSlotPool(link, config.max_in_flight, config.max_wait, lease, in_flight),
            shared_destinations,
            shared_cooldown,
            first_look,
        )
