"""Per-egress budgets (`daily_budget`, `per_minute`) and rests, in this process or shared by
every process through Redis (the same GCRA as the domain budgets, with no waiting: an
egress over budget hands the callout to the next one)."""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING

from cbv.cache.backend import Clock
from cbv.config import CalloutConfig
from cbv.egress.health import RefusalTracker, RestRule
from cbv.egress.pool import EgressLedger, EgressObserver, EgressPool, Unavailable
from cbv.egress.routes import EgressRoutes
from cbv.egress.table import Egress, egresses_from_config
from cbv.engine.gcra import Gcra
from cbv.providers import provider_of

if TYPE_CHECKING:  # redis-py is imported only where a Redis URL is opened
    from cbv.cache.redis_link import RedisLink

DAY = 86_400

TAKE = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 1 end
local budget = tonumber(ARGV[1])
if budget > 0 and tonumber(redis.call('GET', KEYS[2]) or '0') >= budget then return 2 end
local interval = tonumber(ARGV[3])
if interval > 0 then
  local now = redis.call('TIME')
  now = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
  local tat = tonumber(redis.call('GET', KEYS[3]) or now)
  if tat < now then tat = now end
  if tat - tonumber(ARGV[4]) - now > 0 then return 3 end
  local next_tat = tat + interval
  redis.call('SET', KEYS[3], string.format('%.0f', next_tat), 'PX',
             string.format('%.0f', next_tat - now + 1000))
end
if budget > 0 then
  redis.call('INCR', KEYS[2])
  redis.call('PEXPIRE', KEYS[2], ARGV[2])
end
return 0
"""

REFUSED = """
if redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
local now = redis.call('TIME')
now = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
redis.call('ZADD', KEYS[1], now, ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[2]))
redis.call('PEXPIRE', KEYS[1], ARGV[2])
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[3]) then
  redis.call('DEL', KEYS[1])
  redis.call('SET', KEYS[2], '1', 'PX', ARGV[4])
  return 1
end
return 0
"""

_UNAVAILABLE: dict[int, Unavailable] = {
    1: "resting", 2: "daily budget spent", 3: "per-minute budget spent"}


def minute_gcra(egress: Egress) -> Gcra | None:
    """`per_minute` callouts a minute, up to a minute's worth at once."""
    if egress.per_minute is None:
        return None
    return Gcra.per_minute(egress.per_minute, max(1, math.ceil(egress.per_minute)))


class LocalLedger:
    def __init__(self, rule: RestRule, clock: Clock = time.time) -> None:
        self._clock = clock
        self._tracker = RefusalTracker(rule)
        self._arrivals: dict[str, float] = {}
        self._days: dict[str, tuple[int, int]] = {}  # egress -> (UTC day, callouts that day)

    async def take(self, egress: Egress) -> Unavailable | None:
        now = self._clock()
        if self._tracker.resting(egress.name, now):
            return "resting"
        day = int(now // DAY)
        counted_day, used = self._days.get(egress.name, (day, 0))
        used = used if counted_day == day else 0
        if egress.daily_budget is not None and used >= egress.daily_budget:
            return "daily budget spent"
        gcra = minute_gcra(egress)
        if gcra is not None:
            reserved = gcra.reserve(self._arrivals.get(egress.name, now), now, 0.0)
            if reserved is None:
                return "per-minute budget spent"
            self._arrivals[egress.name] = reserved[1]
        self._days[egress.name] = (day, used + 1)
        return None

    async def refused(self, egress: Egress, host: str) -> float:
        return self._tracker.refused(egress.name, host, self._clock())


class RedisLedger:
    """Falls back to its process's own ledger while Redis is down."""

    def __init__(self, link: RedisLink, rule: RestRule, local: LocalLedger,
                 clock: Clock = time.time) -> None:
        self._link = link
        self._rule = rule
        self._local = local
        self._clock = clock
        self._take = link.client.register_script(TAKE)
        self._refused = link.client.register_script(REFUSED)

    def _key(self, egress: Egress, what: str) -> str:
        return self._link.keys.egress(egress.name, what)

    async def take(self, egress: Egress) -> Unavailable | None:
        gcra = minute_gcra(egress)
        day = int(self._clock() // DAY)

        async def in_redis() -> Unavailable | None:
            answer = int(await self._take(
                keys=[self._key(egress, "rest"), self._key(egress, f"day:{day}"),
                      self._key(egress, "rate")],
                args=[egress.daily_budget or 0, 2 * DAY * 1000,
                      round(gcra.interval * 1000) if gcra else 0,
                      round(gcra.tolerance * 1000) if gcra else 0]))
            return _UNAVAILABLE.get(answer)

        return await self._link.call(in_redis, lambda: self._local.take(egress))

    async def refused(self, egress: Egress, host: str) -> float:
        rule = self._rule

        async def in_redis() -> float:
            rests = await self._refused(
                keys=[self._key(egress, "refusals"), self._key(egress, "rest")],
                args=[provider_of(host), round(rule.window * 1000), rule.rest_after,
                      round(rule.rest * 1000)])
            return rule.rest if int(rests) else 0.0

        return await self._link.call(in_redis, lambda: self._local.refused(egress, host))


def build_egress_pool(
    config: CalloutConfig, link: RedisLink | None, observer: EgressObserver,
    clock: Clock = time.time,
) -> EgressPool:
    """The egresses `config` names, their routes, and a ledger shared through `link`."""
    rule = RestRule(config.egress_rest_after, config.egress_refusal_window, config.egress_rest)
    local = LocalLedger(rule, clock)
    ledger: EgressLedger = RedisLedger(link, rule, local, clock) if link else local
    egresses = egresses_from_config(config)
    return EgressPool(egresses, EgressRoutes(egresses, config.egress_routes), ledger, observer)
