"""Every backend keeps the same promises: memory, SQLite, Redis and Redis Cluster."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
import redis

from cbv.address import parse_address
from cbv.cache.backend import CacheBackend
from cbv.cache.memory import MemoryBackend
from cbv.cache.opening import open_cache
from cbv.cache.records import Fact
from cbv.cache.sqlite import SQLiteBackend
from cbv.config import CacheConfig
from cbv.model import Reason, Result
from tests.cache.helpers import T0, FakeClock, record

KINDS = [
    "memory",
    "sqlite",
    pytest.param("redis", marks=pytest.mark.peers),
    pytest.param("redis-cluster", marks=pytest.mark.peers),
]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest_asyncio.fixture(params=KINDS)
async def backend(
    request: pytest.FixtureRequest, tmp_path: Path, clock: FakeClock
) -> AsyncIterator[CacheBackend]:
    kind = request.param
    opened: CacheBackend
    if kind == "memory":
        opened = MemoryBackend(clock=clock)
    elif kind == "sqlite":
        opened = SQLiteBackend(tmp_path / "cache.sqlite3", clock=clock)
    else:
        url = request.getfixturevalue("redis_url" if kind == "redis" else "redis_cluster_url")
        opened = open_cache(CacheConfig(url=url), clock=clock, fall_back=False).backend
    yield opened
    await opened.aclose()


async def test_a_stored_verdict_comes_back_whole_and_marked_cached(
    backend: CacheBackend,
) -> None:
    stored = record("Alice@example.test")
    await backend.put(stored)
    found = await backend.get(parse_address("Alice@example.test"))
    assert found is not None
    assert found.verdict == stored.verdict
    assert found.verdict.cached is True
    assert found.verdict.expires_at is not None
    assert found.verdict.reply is not None and "Alice@example.test" in found.verdict.reply.text
    assert (found.refresh_at, found.expires_at) == (stored.refresh_at, stored.expires_at)
    assert await backend.get(parse_address("bob@example.test")) is None


async def test_records_disappear_when_they_expire(backend: CacheBackend, clock: FakeClock) -> None:
    await backend.put(record("a@example.test", Reason.MAILBOX_UNKNOWN))
    await backend.flush()
    clock.advance(3 * 3_600 - 1)
    assert await backend.get(parse_address("a@example.test")) is not None
    clock.advance(1)
    assert await backend.get(parse_address("a@example.test")) is None
    assert [r async for r in backend.export()] == []


async def test_facts_are_merged_by_name_and_expire_one_by_one(
    backend: CacheBackend, clock: FakeClock
) -> None:
    await backend.learn("example.test", {"catch_all": Fact(True, T0 + 100),
                                         "unreachable": Fact(True, T0 + 10)})
    await backend.learn("example.test", {"refuses_null_sender": Fact(True, T0 + 100)})
    await backend.flush()
    assert await backend.facts("example.test") == {
        "catch_all": Fact(True, T0 + 100),
        "unreachable": Fact(True, T0 + 10),
        "refuses_null_sender": Fact(True, T0 + 100),
    }
    clock.advance(10)
    assert set(await backend.facts("example.test")) == {"catch_all", "refuses_null_sender"}
    assert await backend.facts("other.test") == {}


async def test_purges_reach_exactly_what_they_name(backend: CacheBackend) -> None:
    for address in ("a@one.test", "b@one.test", "c@two.test", "d@two.test"):
        await backend.put(record(address))
    await backend.learn("one.test", {"catch_all": Fact(False, T0 + 100)})
    await backend.flush()
    assert await backend.purge_address(parse_address("a@one.test")) == 1
    assert await backend.purge_address(parse_address("a@one.test")) == 0
    assert await backend.purge_domain("one.test") == 1
    assert await backend.facts("one.test") == {}
    assert await backend.get(parse_address("b@one.test")) is None
    assert await backend.get(parse_address("c@two.test")) is not None
    assert await backend.purge_all() == 2
    assert await backend.get(parse_address("d@two.test")) is None


async def test_stats_and_export_see_every_live_record(backend: CacheBackend) -> None:
    await backend.put(record("a@one.test"))
    await backend.put(record("b@one.test", Reason.MAILBOX_UNKNOWN))
    await backend.put(record("c@two.test", Reason.GREYLISTED))
    await backend.learn("one.test", {"catch_all": Fact(False, T0 + 100)})
    stats = await backend.stats()
    assert stats.addresses == 3
    assert stats.by_result == {"pass": 1, "fail": 1, "transient": 1}
    assert stats.domains_with_facts == 1
    exported = sorted([r.address async for r in backend.export()])
    assert exported == ["a@one.test", "b@one.test", "c@two.test"]


async def test_an_overwrite_replaces_the_record(backend: CacheBackend) -> None:
    await backend.put(record("a@one.test"))
    await backend.put(record("a@one.test", Reason.MAILBOX_UNKNOWN))
    found = await backend.get(parse_address("a@one.test"))
    assert found is not None and found.verdict.result is Result.FAIL


@pytest.mark.peers
async def test_redis_with_hmac_keeps_addresses_out_of_keys_and_values(redis_url: str) -> None:
    config = CacheConfig(url=redis_url, hmac_key="s3cret")
    backend = open_cache(config, fall_back=False).backend
    try:
        await backend.put(record("Secret.Person@example.test"))
        await backend.learn("example.test", {"catch_all": Fact(True, 2e9 + 100)})
        client = redis.Redis.from_url(redis_url)
        keys = list(client.scan_iter("*"))
        assert len(keys) == 3  # the record, the domain's index and its facts
        assert not any(b"example.test" in key or b"secret" in key.lower() for key in keys)
        values = [client.get(k) for k in keys if client.type(k) == b"string"]
        stored = [value for value in values if isinstance(value, bytes)]
        assert len(stored) == len(values)
        assert b"secret.person" not in b"".join(stored).lower()
        found = await backend.get(parse_address("Secret.Person@example.test"))
        assert found is not None
        assert found.verdict.address == "Secret.Person@example.test"
        assert found.verdict.reply is not None
        assert found.verdict.reply.text == "<Secret.Person@example.test>: recipient ok"
        exported = [r.address async for r in backend.export()]
        assert len(exported) == 1 and exported[0].startswith("hmac:")
    finally:
        await backend.aclose()


async def test_a_peek_finds_only_what_is_held_in_this_process(
    backend: CacheBackend, clock: FakeClock
) -> None:
    stored = record("alice@example.test", Reason.MAILBOX_UNKNOWN)
    await backend.put(stored)
    alice = parse_address("alice@example.test")
    held_here = isinstance(backend, MemoryBackend | SQLiteBackend)  # Redis holds nothing here
    assert backend.peek(alice) == (stored if held_here else None)
    assert backend.peek(parse_address("bob@example.test")) is None
    clock.advance(3 * 3_600)
    assert backend.peek(alice) is None


async def test_a_peek_does_not_see_a_purged_record(backend: CacheBackend) -> None:
    await backend.put(record("alice@example.test"))
    await backend.purge_address(parse_address("alice@example.test"))
    assert backend.peek(parse_address("alice@example.test")) is None
