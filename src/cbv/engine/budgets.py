"""Rate budgets per destination: the MX address, its network and its provider.

A per-domain budget is bypassed by forging many domains that all name one victim's MX;
these budgets count sessions where they land. One session takes a slot from each of its
destination's allowances at once or from none (all-or-nothing, so a refusal by one does
not spend the others), and waits for the latest of them. With Redis the reservation runs
in one script on Redis's clock over keys that share one Cluster slot; while Redis is down
the process keeps its own.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from cbv.callout.plan import Target
from cbv.config import LimitsConfig
from cbv.engine.gcra import Gcra, pruned
from cbv.providers import network_of, provider_of

if TYPE_CHECKING:  # redis-py is imported only where a Redis URL is opened
    from cbv.cache.redis_link import RedisLink

PRUNE_ABOVE = 10_000

RESERVE_ALL = """
local now = redis.call('TIME')
now = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
local max_wait = tonumber(ARGV[1])
local tats = {}
local wait = 0
for i, key in ipairs(KEYS) do
  local tat = tonumber(redis.call('GET', key) or now)
  if tat < now then tat = now end
  local need = tat - tonumber(ARGV[2 * i + 1]) - now
  if need > max_wait then return -i end
  if need > wait then wait = need end
  tats[i] = tat + tonumber(ARGV[2 * i])
end
for i, key in ipairs(KEYS) do
  redis.call('SET', key, string.format('%.0f', tats[i]), 'PX',
             string.format('%.0f', tats[i] - now + 1000))
end
return math.floor(wait)
"""

FREE_IN = """
local now = redis.call('TIME')
now = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
local wait = 0
for i, key in ipairs(KEYS) do
  local tat = tonumber(redis.call('GET', key) or now)
  local need = tat - tonumber(ARGV[i]) - now
  if need > wait then wait = need end
end
return math.floor(wait)
"""


# The gate's first look in one round trip (standalone Redis only: a Cluster keeps the
# cooldowns and the budgets in two hash slots). KEYS[1] the cooling hash, the budgets after;
# ARGV as RESERVE_ALL's. Returns the standing {until, strikes, detail, now} and, unless the
# address cools, RESERVE_ALL's answer (-i counts the budgets from the first, KEYS[2]).
STANDING_THEN_RESERVE = """
local now = redis.call('TIME')
now = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
local held = redis.call('HMGET', KEYS[1], 'until', 'strikes', 'detail')
local standing = {held[1] or '0', held[2] or '0', held[3] or '', now}
if tonumber(standing[1]) > now then return {standing} end
local max_wait = tonumber(ARGV[1])
local tats = {}
local wait = 0
for i = 2, #KEYS do
  local tat = tonumber(redis.call('GET', KEYS[i]) or now)
  if tat < now then tat = now end
  local need = tat - tonumber(ARGV[2 * i - 1]) - now
  if need > max_wait then return {standing, 1 - i} end
  if need > wait then wait = need end
  tats[i] = tat + tonumber(ARGV[2 * i - 2])
end
for i = 2, #KEYS do
  redis.call('SET', KEYS[i], string.format('%.0f', tats[i]), 'PX',
             string.format('%.0f', tats[i] - now + 1000))
end
return {standing, math.floor(wait)}
"""


@dataclass(frozen=True, slots=True)
class Allowance:
    """One budget a session to a destination draws on."""

    name: str  # the budget's key: "ip:192.0.2.1", "net:192.0.2.0/24", "provider:example.com"
    label: str  # for details and logs: "MX address 192.0.2.1"
    gcra: Gcra


def allowances(target: Target, config: LimitsConfig) -> tuple[Allowance, ...]:
    """The budgets a session to `target` counts against (the provider's only when the
    host has a name)."""
    network = network_of(target.ip)
    found = [
        Allowance(f"ip:{target.ip}", f"MX address {target.ip}",
                  Gcra.per_minute(config.ip_per_minute, config.ip_burst)),
        Allowance(f"net:{network}", f"network {network}",
                  Gcra.per_minute(config.network_per_minute, config.network_burst)),
    ]
    provider = provider_of(target.host)
    if provider != target.ip:
        found.append(Allowance(f"provider:{provider}", f"provider {provider}",
                               Gcra.per_minute(config.provider_rate(provider),
                                               config.provider_burst)))
    return tuple(found)


def reserved(wanted: Sequence[Allowance], answer: int) -> float | Allowance:
    """RESERVE_ALL's answer: milliseconds to wait, or -i for the i-th allowance, spent."""
    return wanted[-answer - 1] if answer < 0 else answer / 1000


class DestinationBudget(Protocol):
    async def reserve(self, wanted: Sequence[Allowance]) -> float | Allowance:
        """Seconds to wait before the session, or the allowance that is spent (nothing
        is then taken from any of them)."""
        ...

    async def free_in(self, wanted: Sequence[Allowance]) -> float:
        """Seconds until `reserve` would need no wait, taking nothing (for schedulers)."""
        ...


class LocalDestinationBudget:
    def __init__(self, max_wait: float) -> None:
        self._max_wait = max_wait
        self._arrivals: dict[str, float] = {}

    async def reserve(self, wanted: Sequence[Allowance]) -> float | Allowance:
        now = time.monotonic()
        wait = 0.0
        arrivals: list[float] = []
        for allowance in wanted:
            tat = self._arrivals.get(allowance.name, now)
            reserved = allowance.gcra.reserve(tat, now, self._max_wait)
            if reserved is None:
                return allowance
            wait = max(wait, reserved[0])
            arrivals.append(reserved[1])
        for allowance, arrival in zip(wanted, arrivals, strict=True):
            self._arrivals[allowance.name] = arrival
        if len(self._arrivals) > PRUNE_ABOVE:
            self._arrivals = pruned(self._arrivals, now)
        return wait

    async def free_in(self, wanted: Sequence[Allowance]) -> float:
        now = time.monotonic()
        return max((a.gcra.free_in(self._arrivals.get(a.name, now), now) for a in wanted),
                   default=0.0)


class RedisDestinationBudget:
    def __init__(self, link: RedisLink, max_wait: float, local: LocalDestinationBudget) -> None:
        self._link = link
        self._max_wait_ms = round(max_wait * 1000)
        self._local = local
        self._reserve = link.client.register_script(RESERVE_ALL)
        self._free_in = link.client.register_script(FREE_IN)

    def args(self, wanted: Sequence[Allowance]) -> list[int]:
        """RESERVE_ALL's ARGV (and STANDING_THEN_RESERVE's)."""
        args: list[int] = [self._max_wait_ms]
        for allowance in wanted:
            args += [round(allowance.gcra.interval * 1000), round(allowance.gcra.tolerance * 1000)]
        return args

    def keys(self, wanted: Sequence[Allowance]) -> list[str]:
        return [self._link.keys.destination(allowance.name) for allowance in wanted]

    async def reserve(self, wanted: Sequence[Allowance]) -> float | Allowance:
        async def in_redis() -> float | Allowance:
            answer = int(await self._reserve(keys=self.keys(wanted), args=self.args(wanted)))
            return reserved(wanted, answer)

        return await self._link.call(in_redis, lambda: self._local.reserve(wanted))

    async def free_in(self, wanted: Sequence[Allowance]) -> float:
        args = [round(allowance.gcra.tolerance * 1000) for allowance in wanted]

        async def in_redis() -> float:
            return int(await self._free_in(keys=self.keys(wanted), args=args)) / 1000

        return await self._link.call(in_redis, lambda: self._local.free_in(wanted))
