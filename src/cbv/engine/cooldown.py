"""The refusal cooldown: an MX address that refused the verifier itself is left alone.

Re-probing a host that has blocklisted us is how a verifier's address gets listed
everywhere. A refusal starts a cooldown of `refusal_cooldown` seconds for that address;
a refusal after the cooldown ended doubles it (up to a day); a good session forgets the
refusals. Refusals are remembered for a day after their cooldown ends, so the doubling
sees repeats. With Redis every process shares the cooldowns (Redis's clock decides);
while Redis is down each process keeps its own.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, Protocol

if TYPE_CHECKING:  # redis-py is imported only where a Redis URL is opened
    from cbv.cache.redis_link import RedisLink

LONGEST_COOLDOWN = 86_400.0
REMEMBERED_AFTER = 86_400.0  # refusals kept this long after their cooldown, for doubling
PRUNE_ABOVE = 10_000
DETAIL_CHARS = 200
LISTED_AT_MOST = 1_000

REFUSED = """
local now = redis.call('TIME')
now = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
local held = redis.call('HMGET', KEYS[1], 'until', 'strikes')
local until_at = tonumber(held[1] or '0')
local strikes = tonumber(held[2] or '0')
if until_at <= now then
  strikes = strikes + 1
  local duration = math.min(tonumber(ARGV[1]) * 2 ^ (strikes - 1), tonumber(ARGV[2]))
  until_at = now + duration
  redis.call('HSET', KEYS[1], 'until', string.format('%.0f', until_at), 'strikes', strikes,
             'detail', ARGV[4])
  redis.call('PEXPIRE', KEYS[1], string.format('%.0f', duration + tonumber(ARGV[5])))
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
  redis.call('ZADD', KEYS[2], string.format('%.0f', until_at), ARGV[3])
  return {string.format('%.0f', until_at), strikes, now}
end
return false
"""

STANDING = """
local now = redis.call('TIME')
now = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
local held = redis.call('HMGET', KEYS[1], 'until', 'strikes', 'detail')
return {held[1] or '0', held[2] or '0', held[3] or '', now}
"""


@dataclass(slots=True)
class Standing:
    """What is known of one MX address: refusals remembered and, while it cools, until when."""

    ip: Final[str]
    strikes: Final[int] = 0
    until: Final[float] = 0.0  # epoch seconds; past means not cooling
    detail: Final[str] = ""  # what the host said when it refused
    now: Final[float] = 0.0  # the clock that decided, epoch seconds

    @property
    def cooling(self) -> bool:
        return self.until > self.now


class Cooldown(Protocol):
    async def standing(self, ip: str) -> Standing: ...

    async def refused(self, ip: str, detail: str) -> Standing | None:
        """Start the address's cooldown; None when it cools already (nothing changes)."""
        ...

    async def succeeded(self, ip: str) -> None:
        """A good session: forget the address's refusals."""
        ...

    async def cooling(self) -> list[Standing]:
        """The addresses cooling now, soonest free first (at most LISTED_AT_MOST)."""
        ...

    async def purge(self, ip: str | None = None) -> int:
        """Forget one address's refusals, or every address's; returns how many."""
        ...


def cooldown_seconds(base: float, strikes: int) -> float:
    return float(min(base * 2 ** (strikes - 1), LONGEST_COOLDOWN))


class LocalCooldown:
    def __init__(self, base: float, clock: Callable[[], float] = time.time) -> None:
        self._base = base
        self._now = clock
        self._hosts: dict[str, Standing] = {}

    def _live(self, ip: str, now: float) -> Standing | None:
        held = self._hosts.get(ip)
        if held is None or held.until + REMEMBERED_AFTER <= now:
            return None
        return held

    async def standing(self, ip: str) -> Standing:
        now = self._now()
        held = self._live(ip, now)
        if held is None:
            return Standing(ip, now=now)
        return Standing(ip, held.strikes, held.until, held.detail, now)

    async def refused(self, ip: str, detail: str) -> Standing | None:
        now = self._now()
        held = self._live(ip, now)
        if held is not None and held.until > now:
            return None
        strikes = (held.strikes if held else 0) + 1
        until = now + cooldown_seconds(self._base, strikes)
        self._hosts[ip] = Standing(ip, strikes, until, detail[:DETAIL_CHARS], now)
        if len(self._hosts) > PRUNE_ABOVE:
            self._hosts = {k: v for k, v in self._hosts.items() if self._live(k, now)}
        return self._hosts[ip]

    async def succeeded(self, ip: str) -> None:
        self._hosts.pop(ip, None)

    async def cooling(self) -> list[Standing]:
        now = self._now()
        found = [Standing(s.ip, s.strikes, s.until, s.detail, now)
                 for s in self._hosts.values() if s.until > now]
        return sorted(found, key=lambda s: s.until)[:LISTED_AT_MOST]

    async def purge(self, ip: str | None = None) -> int:
        if ip is not None:
            return 1 if self._hosts.pop(ip, None) is not None else 0
        count = len(self._hosts)
        self._hosts.clear()
        return count


class RedisCooldown:
    def __init__(self, link: RedisLink, base: float, local: LocalCooldown) -> None:
        self._link = link
        self._base_ms = round(base * 1000)
        self._local = local
        self._refused = link.client.register_script(REFUSED)
        self._standing = link.client.register_script(STANDING)

    async def standing(self, ip: str) -> Standing:
        async def in_redis() -> Standing:
            return standing_of(ip, await self._standing(keys=[self._link.keys.cooling(ip)]))

        return await self._link.call(in_redis, lambda: self._local.standing(ip))

    async def refused(self, ip: str, detail: str) -> Standing | None:
        keys = self._link.keys
        clipped = detail[:DETAIL_CHARS]

        async def in_redis() -> Standing | None:
            started = await self._refused(
                keys=[keys.cooling(ip), keys.cooling_index],
                args=[self._base_ms, round(LONGEST_COOLDOWN * 1000), ip, clipped,
                      round(REMEMBERED_AFTER * 1000)],
            )
            if not started:
                return None
            until, strikes, now = started
            return Standing(ip, int(strikes), int(until) / 1000, clipped, int(now) / 1000)

        return await self._link.call(in_redis, lambda: self._local.refused(ip, detail))

    async def succeeded(self, ip: str) -> None:
        keys = self._link.keys

        async def in_redis() -> None:
            await self._link.client.delete(keys.cooling(ip))
            await self._link.client.zrem(keys.cooling_index, ip)

        await self._link.call(in_redis, lambda: self._local.succeeded(ip))

    async def cooling(self) -> list[Standing]:
        return await self._link.call(self.read_cooling, self._local.cooling)

    async def read_cooling(self) -> list[Standing]:
        """`cooling()` straight from Redis, no fallback (the CLI wraps it in `strict`)."""
        client, keys = self._link.client, self._link.keys
        now = time.time()
        listed = await client.zrangebyscore(
            keys.cooling_index, now * 1000, "+inf", start=0, num=LISTED_AT_MOST)
        found: list[Standing] = []
        for raw in listed:
            assert isinstance(raw, bytes | str)  # members only: no withscores
            ip = _text(raw)
            until, strikes, detail = await client.hmget(keys.cooling(ip),
                                                        ["until", "strikes", "detail"])
            if until is not None:
                found.append(Standing(ip, int(strikes or 0), int(until) / 1000,
                                      _text(detail or b""), now))
        return [s for s in found if s.cooling]

    async def purge(self, ip: str | None = None) -> int:
        client, keys = self._link.client, self._link.keys

        async def one(ip: str) -> int:
            await client.zrem(keys.cooling_index, ip)
            return int(await client.delete(keys.cooling(ip)))

        async def every() -> int:
            count = 0
            async for key in client.scan_iter(match=keys.cooling_pattern):
                count += int(await client.delete(key))
            await client.delete(keys.cooling_index)
            return count

        return await self._link.strict(lambda: one(ip) if ip is not None else every())


def standing_of(ip: str, held: list[bytes | str | int]) -> Standing:
    """A standing as STANDING (or the gate's first look) answers it: until, strikes, detail,
    Redis's clock (milliseconds)."""
    until, strikes, detail, now = held
    assert isinstance(detail, bytes | str)
    return Standing(ip, int(strikes), int(until) / 1000, _text(detail), int(now) / 1000)


def _text(value: bytes | str) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value
