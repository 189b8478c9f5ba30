"""Redis going away mid-run: answers keep coming, one log line, and back to Redis after."""

from __future__ import annotations

import asyncio
import logging

import pytest

from cbv.cache.redis_link import KeyScheme
from cbv.engine.verifier import Verifier
from cbv.model import Result
from cbv.testing import MXScript
from tests.peers.redis_server import RedisProcess
from tests.world import World

pytestmark = pytest.mark.peers

FAST_REDIS = {"redis_timeout": 0.2, "redis_retry_interval": 0.3}
ROOMY = {"domain_burst": 1_000}
BOUND = 10.0  # far above any healthy answer; only a hang would reach it


def stored_in_redis(server: RedisProcess, address: str) -> bool:
    key = KeyScheme().record(address.rpartition("@")[2], address)
    return bool(server.client().exists(key))


def messages(caplog: pytest.LogCaptureFixture, text: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if text in r.getMessage()]


async def test_redis_killed_and_restarted_mid_run(
    world: World, redis_own: RedisProcess, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="cbv.cache")
    farm = await world.mx("example.test", {"127.0.0.2": MXScript(catch_all=True)})
    config = world.config(cache={"url": redis_own.url, **FAST_REDIS}, limits=ROOMY)
    async with Verifier(config) as verifier:
        before = await verifier.verify_many([f"before{n}@example.test" for n in range(20)])
        assert stored_in_redis(redis_own, "before0@example.test")
        redis_own.kill()
        async with asyncio.timeout(BOUND):
            during = await asyncio.gather(
                *(verifier.verify(f"during{n}@example.test") for n in range(50))
            )
            repeat = await verifier.verify("during0@example.test")
        assert len(messages(caplog, "unavailable")) == 1
        redis_own.start()
        async with asyncio.timeout(BOUND):
            n = 0
            while not stored_in_redis(redis_own, f"after{n}@example.test"):
                n += 1
                await verifier.verify(f"after{n}@example.test")
                await asyncio.sleep(0.05)
    assert {v.result for v in before + during} == {Result.PASS}
    assert repeat.cached  # the local cache stood in for Redis
    assert farm.servers["127.0.0.2"].rcpts.count("during0@example.test") == 1
    assert len(messages(caplog, "unavailable")) == 1
    assert len(messages(caplog, "is back")) == 1


async def test_a_redis_that_stops_answering_never_hangs_a_caller(
    world: World, redis_own: RedisProcess, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="cbv.cache")
    await world.mx("example.test", {"127.0.0.2": MXScript(catch_all=True)})
    config = world.config(cache={"url": redis_own.url, **FAST_REDIS}, limits=ROOMY)
    async with Verifier(config) as verifier:
        await verifier.verify("warm@example.test")
        redis_own.pause()
        try:
            async with asyncio.timeout(BOUND):
                verdicts = await asyncio.gather(
                    *(verifier.verify(f"user{n}@example.test") for n in range(20))
                )
        finally:
            redis_own.resume()
    assert {v.result for v in verdicts} == {Result.PASS}
    assert len(messages(caplog, "unavailable")) == 1
