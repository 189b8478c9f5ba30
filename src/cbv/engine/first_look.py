"""The gate's first look before a session: the MX address's cooldown standing and, unless it
cools, a reservation from its destination budgets.

With a standalone Redis both are one script, one round trip per session instead of two. A
Redis Cluster keeps the cooldowns and the budgets in two hash slots, which one script may
not span: there, and without Redis, the cooldown and the budgets are asked in turn.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

from cbv.engine.budgets import (
    STANDING_THEN_RESERVE,
    Allowance,
    DestinationBudget,
    RedisDestinationBudget,
    reserved,
)
from cbv.engine.cooldown import Cooldown, Standing, standing_of

if TYPE_CHECKING:  # redis-py is imported only where a Redis URL is opened
    from cbv.cache.redis_link import RedisLink

Look = tuple[Standing, float | Allowance | None]  # None: it cools, nothing was reserved


class FirstLook(Protocol):
    async def look(self, cooling_key: str, wanted: Sequence[Allowance]) -> Look:
        """The standing of `cooling_key` and, unless it cools, what
        `DestinationBudget.reserve(wanted)` answers."""
        ...


class LookInTurn:
    def __init__(self, cooldown: Cooldown, budget: DestinationBudget) -> None:
        self._cooldown = cooldown
        self._budget = budget

    async def look(self, cooling_key: str, wanted: Sequence[Allowance]) -> Look:
        standing = await self._cooldown.standing(cooling_key)
        if standing.cooling:
            return standing, None
        return standing, await self._budget.reserve(wanted)


class RedisLook:
    """One script on a standalone Redis; `local` (this process's own cooldown and budgets)
    while Redis is down."""

    def __init__(self, link: RedisLink, budget: RedisDestinationBudget, local: LookInTurn
                 ) -> None:
        self._link = link
        self._budget = budget
        self._local = local
        self._script = link.client.register_script(STANDING_THEN_RESERVE)

    async def look(self, cooling_key: str, wanted: Sequence[Allowance]) -> Look:
        async def in_redis() -> Look:
            answer = await self._script(
                keys=[self._link.keys.cooling(cooling_key), *self._budget.keys(wanted)],
                args=self._budget.args(wanted))
            standing = standing_of(cooling_key, answer[0])
            if len(answer) == 1:
                return standing, None
            return standing, reserved(wanted, int(answer[1]))

        return await self._link.call(in_redis, lambda: self._local.look(cooling_key, wanted))
