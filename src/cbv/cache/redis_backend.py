"""The cache shared by a fleet: Redis standalone or Cluster, through `RedisLink`.

An address record is one string, `refresh_at|expires_at|verdict JSON`, with a Redis
expiry at `expires_at`; each domain keeps a set of its record keys (for `purge
@domain`) and a hash of facts, all under the domain's hash tag. With a fallback,
calls that find Redis down are served by the local memory cache instead; without
one (the CLI), they raise a one-line CacheError.
"""

from __future__ import annotations

import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import TypeVar

from cbv.address import Address
from cbv.cache.backend import Clock
from cbv.cache.memory import MemoryBackend
from cbv.cache.records import (
    BadRecords,
    CachedVerdict,
    CacheStats,
    Fact,
    dump_verdict,
    load_verdict,
)
from cbv.cache.redis_link import RedisLink

T = TypeVar("T")

SCAN_COUNT = 500

# A key of the wrong type (written by something else, or corrupted) is replaced, not obeyed.
PUT = """
local index_type = redis.call('TYPE', KEYS[2])['ok']
if index_type ~= 'set' and index_type ~= 'none' then
  redis.call('DEL', KEYS[2])
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
redis.call('SADD', KEYS[2], KEYS[1])
if redis.call('PTTL', KEYS[2]) < tonumber(ARGV[2]) then
  redis.call('PEXPIRE', KEYS[2], ARGV[2])
end
return 1
"""

PURGE_ADDRESS = """
redis.call('SREM', KEYS[2], KEYS[1])
return redis.call('DEL', KEYS[1])
"""

PURGE_DOMAIN = """
local count = 0
for _, key in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  count = count + redis.call('DEL', key)
end
redis.call('DEL', KEYS[1], KEYS[2])
return count
"""

LEARN = """
local facts_type = redis.call('TYPE', KEYS[1])['ok']
if facts_type ~= 'hash' and facts_type ~= 'none' then
  redis.call('DEL', KEYS[1])
end
for i = 2, #ARGV, 2 do
  redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
end
if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[1]) then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
end
return 1
"""


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _ttl_ms(expires_at: float, now: float) -> int:
    return math.ceil((expires_at - now) * 1000)


class RedisBackend:
    def __init__(
        self, link: RedisLink, *, clock: Clock = time.time, fallback: MemoryBackend | None = None
    ) -> None:
        self._link = link
        self._keys = link.keys
        self._client = link.client
        self._clock = clock
        self._fallback = fallback
        self._bad_records = BadRecords(link.description)
        self._put = self._client.register_script(PUT)
        self._purge_address = self._client.register_script(PURGE_ADDRESS)
        self._purge_domain = self._client.register_script(PURGE_DOMAIN)
        self._learn = self._client.register_script(LEARN)

    @property
    def description(self) -> str:
        return self._link.description

    async def _run(
        self,
        operation: Callable[[], Awaitable[T]],
        local: Callable[[MemoryBackend], Awaitable[T]],
        key: str = "",
    ) -> T:
        fallback = self._fallback
        if fallback is None:
            return await self._link.strict(operation)
        return await self._link.call(operation, lambda: local(fallback), key)

    def _decode(self, raw: bytes | str, address: str, key: str) -> CachedVerdict | None:
        """None for an expired record, and for one that does not decode (reported once)."""
        try:
            refresh_at, expires_at, body = _text(raw).split("|", 2)
            if float(expires_at) <= self._clock():
                return None
            verdict = load_verdict(self._keys.reveal(body, address))
            return CachedVerdict(verdict, float(refresh_at), float(expires_at))
        except ValueError as exc:
            self._bad_records.report(key, exc)
            return None

    async def get(self, address: Address) -> CachedVerdict | None:
        key = self._keys.record(address.domain, str(address))

        async def from_redis() -> CachedVerdict | None:
            raw = await self._client.get(key)
            return None if raw is None else self._decode(raw, str(address), key)

        return await self._run(from_redis, lambda local: local.get(address), key)

    def peek(self, address: Address) -> CachedVerdict | None:
        """Redis keeps nothing in this process: only `get` can tell."""
        return None

    async def put(self, record: CachedVerdict) -> None:
        async def to_redis() -> None:
            ttl = _ttl_ms(record.expires_at, self._clock())
            if ttl <= 0:
                return
            body = self._keys.conceal(dump_verdict(record.verdict), record.address)
            value = f"{record.refresh_at:.6f}|{record.expires_at:.6f}|{body}"
            keys = [
                self._keys.record(record.domain, record.address),
                self._keys.index(record.domain),
            ]
            await self._put(keys=keys, args=[value, ttl])

        key = self._keys.record(record.domain, record.address)
        await self._run(to_redis, lambda local: local.put(record), key)

    async def facts(self, domain: str) -> dict[str, Fact]:
        key = self._keys.facts(domain)

        async def from_redis() -> dict[str, Fact]:
            now = self._clock()
            raw = await self._client.hgetall(key)
            facts: dict[str, Fact] = {}
            for name, encoded in raw.items():
                try:
                    value, _, expires_at = _text(encoded).partition("|")
                    fact = Fact(value == "1", float(expires_at))
                except ValueError as exc:
                    self._bad_records.report(f"{key} {_text(name)!r}", exc)
                    continue
                if fact.expires_at > now:
                    facts[_text(name)] = fact
            return facts

        return await self._run(from_redis, lambda local: local.facts(domain), key)

    async def learn(self, domain: str, facts: Mapping[str, Fact]) -> None:
        async def to_redis() -> None:
            now = self._clock()
            longest = max(_ttl_ms(fact.expires_at, now) for fact in facts.values())
            if longest <= 0:
                return
            args: list[str | int] = [longest]
            for name, fact in facts.items():
                args += [name, f"{int(fact.value)}|{fact.expires_at:.6f}"]
            await self._learn(keys=[self._keys.facts(domain)], args=args)

        if facts:
            await self._run(to_redis, lambda local: local.learn(domain, facts),
                            self._keys.facts(domain))

    async def purge_address(self, address: Address) -> int:
        async def in_redis() -> int:
            keys = [
                self._keys.record(address.domain, str(address)),
                self._keys.index(address.domain),
            ]
            return int(await self._purge_address(keys=keys))

        return await self._run(in_redis, lambda local: local.purge_address(address))

    async def purge_domain(self, domain: str) -> int:
        async def in_redis() -> int:
            keys = [self._keys.index(domain), self._keys.facts(domain)]
            return int(await self._purge_domain(keys=keys))

        return await self._run(in_redis, lambda local: local.purge_domain(domain))

    async def purge_all(self) -> int:
        async def in_redis() -> int:
            records = 0
            batch: list[bytes] = []
            async for key in self._client.scan_iter(match=self._keys.all_pattern, count=SCAN_COUNT):
                records += b":a:" in key
                batch.append(key)
                if len(batch) >= SCAN_COUNT:
                    await self._client.delete(*batch)
                    batch = []
            if batch:
                await self._client.delete(*batch)
            return records

        return await self._run(in_redis, lambda local: local.purge_all())

    async def stats(self) -> CacheStats:
        async def from_redis() -> CacheStats:
            stats = CacheStats(backend=self.description)
            now = self._clock()
            async for record in self._scan_records():
                stats.count(record, now)
            async for _ in self._client.scan_iter(match=self._keys.facts_pattern, count=SCAN_COUNT):
                stats.domains_with_facts += 1
            return stats

        return await self._run(from_redis, lambda local: local.stats())

    async def export(self) -> AsyncIterator[CachedVerdict]:
        if self._fallback is not None and self._link.health.is_down:
            async for record in self._fallback.export():
                yield record
            return
        async for record in self._scan_records():
            yield record

    async def _scan_records(self) -> AsyncIterator[CachedVerdict]:
        """Records by SCAN; with HMAC keys the address shows as `hmac:<digest>`."""
        batch: list[bytes] = []

        async def decoded() -> list[CachedVerdict]:
            pipe = self._client.pipeline(transaction=False)
            for key in batch:
                pipe.get(key)
            values = await pipe.execute(raise_on_error=False)
            records: list[CachedVerdict] = []
            for key, raw in zip(batch, values, strict=True):
                ident = key.decode().split(":a:", 1)[1]
                shown = f"hmac:{ident}" if self._keys.conceals else ident
                if isinstance(raw, Exception):
                    self._bad_records.report(key.decode(), raw)
                    continue
                record = None if raw is None else self._decode(raw, shown, key.decode())
                if record is not None:
                    records.append(record)
            return records

        async for key in self._client.scan_iter(match=self._keys.record_pattern, count=SCAN_COUNT):
            batch.append(key)
            if len(batch) >= SCAN_COUNT:
                for record in await decoded():
                    yield record
                batch = []
        if batch:
            for record in await decoded():
                yield record

    async def flush(self) -> None:
        """Every put is awaited by Redis already."""

    async def aclose(self) -> None:
        await self._link.aclose()
