"""Per-egress budgets and rests shared by two verifiers (two daemons' engines) through a real
Redis: what one spends or learns, the other respects."""

from __future__ import annotations

from typing import Any

import pytest

from cbv.engine.verifier import Verifier
from cbv.model import Reason, Result
from cbv.testing import MXScript, Reply
from tests.world import World

pytestmark = pytest.mark.peers

BLOCKED = Reply(554, "5.7.1 client host blocked using zen.spamhaus.org")


def config(world: World, redis_url: str, egresses: list[dict[str, Any]]) -> Any:
    return world.config(callout={"egress": egresses, "egress_rest_after": 2},
                        cache={"url": redis_url})


def peers(world: World, ip: str) -> list[str]:
    return [session.peer[0] for session in world.server(ip).log]


async def test_a_daily_budget_is_shared(world: World, redis_url: str) -> None:
    await world.mx("a.test", {"127.0.0.2": MXScript(catch_all=True)})
    egresses = [{"name": "thrifty", "source_address": "127.0.0.51", "daily_budget": 2}]
    cfg = config(world, redis_url, egresses)
    async with Verifier(cfg) as first, Verifier(cfg) as second:
        assert (await first.verify("u1@a.test", use_cache=False)).result is Result.PASS
        assert (await second.verify("u2@a.test", use_cache=False)).result is Result.PASS
        late = [await first.verify("u3@a.test", use_cache=False),
                await second.verify("u4@a.test", use_cache=False)]
    assert [v.reason for v in late] == [Reason.RATE_LIMITED] * 2
    assert all(v.detail and "thrifty daily budget spent" in v.detail for v in late)
    assert peers(world, "127.0.0.2") == ["127.0.0.51"] * 2


async def test_a_rest_learned_by_one_daemon_is_kept_by_the_other(world: World, redis_url: str
                                                                 ) -> None:
    # Two independent hosts refuse the egress (a host that refused is then cooling, so the
    # second refusal must come from another host); the third would answer.
    await world.mx("one.test", {"127.0.0.2": MXScript(banner=BLOCKED),
                                "127.0.0.3": MXScript(catch_all=True),
                                "127.0.0.4": MXScript(banner=BLOCKED)})
    world.dns.add_a("mx.two.test", "127.0.0.4")
    world.dns.add_mx("two.test", [(10, "mx.two.test")])
    world.dns.add_a("mx.fine.test", "127.0.0.3")
    world.dns.add_mx("fine.test", [(10, "mx.fine.test")])
    egresses = [{"name": "listed", "source_address": "127.0.0.51"}]
    cfg = config(world, redis_url, egresses)
    async with Verifier(cfg) as first, Verifier(cfg) as second:
        for domain in ("one.test", "two.test"):
            verdict = await first.verify(f"x@{domain}", use_cache=False)
            assert verdict.reason is Reason.CLIENT_BLOCKED
        verdict = await second.verify("x@fine.test", use_cache=False)
    assert verdict.reason is Reason.RATE_LIMITED
    assert verdict.detail is not None and "listed resting" in verdict.detail
    assert peers(world, "127.0.0.3") == []
