"""Per-domain budgets, per-host and global caps, and the forged-sender flood."""

from __future__ import annotations

import asyncio
import time
from collections import Counter

import pytest

from cbv.address import parse_address
from cbv.engine.gcra import Gcra
from cbv.engine.verifier import Verifier
from cbv.model import Reason, Result
from cbv.testing import MXScript, Reply
from tests.waiting import WITHIN
from tests.world import World

OK = Reply(250, "2.1.5 Ok")


def test_gcra_lets_a_burst_through_then_spaces_callouts() -> None:
    gcra = Gcra.per_minute(rate=60, burst=3)  # one a second after three at once
    tat, waits = 0.0, list[float | None]()
    for _ in range(5):
        reserved = gcra.reserve(tat, now=100.0, max_wait=1.5)
        if reserved is None:
            waits.append(None)
            continue
        wait, tat = reserved
        waits.append(wait)
    assert waits == [0.0, 0.0, 0.0, 1.0, None]
    assert gcra.reserve(tat, now=104.0, max_wait=0) == (0.0, 105.0)


async def test_a_flood_of_forged_senders_costs_the_domain_only_its_budget(world: World) -> None:
    """10,000 different forged senders at one domain, default limits (and every one asked:
    the catch-all fact would answer those arriving after the first session). The budget is
    reckoned over the time the flood took, however long a loaded machine makes it, and the
    DNS and the sessions have what a loaded machine needs (10,000 verifications at once
    kept a 2 s DNS timeout from being met there: `dns_tempfail` for a whole batch)."""
    farm = await world.mx("forged.test", {"127.0.0.2": MXScript(catch_all=True)})
    config = world.config(dns={"timeout": WITHIN}, callout={
        "recheck_catch_all": True, "command_timeout": WITHIN, "total_timeout": 3 * WITHIN})
    senders = [f"forged{n}@forged.test" for n in range(10_000)]
    started = time.monotonic()
    async with Verifier(config) as verifier:
        verdicts = await asyncio.gather(*(verifier.verify(s) for s in senders))
        elapsed = time.monotonic() - started
        limited = [v for v in verdicts if v.reason is Reason.RATE_LIMITED]
        assert await verifier.cache.get(parse_address(limited[0].address)) is None
    limits = config.limits
    budget = limits.domain_burst + int(elapsed * limits.domain_per_minute / 60) + 1
    mx = farm.servers["127.0.0.2"]
    assert mx.connections <= budget
    assert len([r for r in mx.rcpts if r.startswith("forged")]) <= budget
    assert len(limited) >= len(senders) - budget
    assert {v.result for v in limited} == {Result.TRANSIENT}
    assert Counter(v.result for v in verdicts)[Result.PASS] == len(senders) - len(limited)


async def test_the_host_cap_turns_excess_callouts_into_rate_limited(world: World) -> None:
    script = MXScript(catch_all=True, delays={"rcpt": 0.3})
    farm = await world.mx("example.test", {"127.0.0.2": script})
    config = world.config(limits={"mx_concurrency": 1, "max_wait": 0})
    async with Verifier(config) as verifier:
        verdicts = await asyncio.gather(
            *(verifier.verify(f"user{n}@example.test") for n in range(3))
        )
    reasons = Counter(v.reason for v in verdicts)
    assert reasons == {Reason.ACCEPTED: 1, Reason.RATE_LIMITED: 2}
    assert farm.servers["127.0.0.2"].connections == 1
    busy = next(v for v in verdicts if v.reason is Reason.RATE_LIMITED)
    assert busy.detail is not None and "too many callouts in flight to this host" in busy.detail


@pytest.mark.parametrize(("max_wait", "passed"), [(0, 1), (5, 3)])
async def test_the_global_cap_waits_up_to_max_wait(
    world: World, max_wait: float, passed: int
) -> None:
    script = MXScript(catch_all=True, delays={"rcpt": 0.2})
    await world.mx("example.test", {"127.0.0.2": script})
    config = world.config(limits={"max_in_flight": 1, "max_wait": max_wait})
    async with Verifier(config) as verifier:
        verdicts = await asyncio.gather(
            *(verifier.verify(f"user{n}@example.test") for n in range(3))
        )
    assert Counter(v.result for v in verdicts)[Result.PASS] == passed


async def test_a_domain_override_raises_one_domains_budget(world: World) -> None:
    farm = await world.mx("big.test", {"127.0.0.2": MXScript(catch_all=True)})
    config = world.config(limits={"domain_burst": 1, "max_wait": 0,
                                  "domain_overrides": {"big.test": 600}},
                          callout={"recheck_catch_all": True})
    async with Verifier(config) as verifier:
        first = await verifier.verify("a@big.test")
        await asyncio.sleep(0.15)
        second = await verifier.verify("b@big.test")
    assert (first.result, second.result) == (Result.PASS, Result.PASS)
    assert farm.servers["127.0.0.2"].connections == 2
