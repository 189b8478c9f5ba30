"""Nothing read back from a cache is trusted: a bad record is a miss, reported once and
overwritten; a bad Redis key never takes Redis down; a damaged SQLite file is set aside."""

from __future__ import annotations

import logging
import sqlite3
import time
from pathlib import Path

import pytest
import redis

from cbv.address import parse_address
from cbv.cache.sqlite import SQLiteBackend
from cbv.engine.verifier import Verifier
from cbv.model import Result
from cbv.testing import MXScript, Reply
from tests.cache.helpers import record
from tests.world import World

ALICE = "alice@example.test"
RECORD_KEY = "cbv:{example.test}:a:alice@example.test"


def warnings_about(caplog: pytest.LogCaptureFixture, text: str) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.levelno >= logging.WARNING and text in r.getMessage()]


async def test_sqlite_record_that_does_not_decode_is_a_miss_reported_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "cache.sqlite3"
    backend = SQLiteBackend(path, memory_ttl=0)
    try:
        await backend.put(record(ALICE, now=time.time()))
        await backend.flush()
        with sqlite3.connect(path) as connection:
            connection.execute("UPDATE addresses SET verdict = '{\"not\": \"a verdict\"}'")
            connection.execute("INSERT INTO addresses VALUES "
                               "('bob@example.test', 'example.test', 'pass', 'soon', 9e99, '{}')")
            connection.execute("INSERT INTO domain_facts VALUES "
                               "('example.test', 'catch_all', 'yes', 'never')")
        alice = parse_address(ALICE)
        assert await backend.get(alice) is None
        assert await backend.get(alice) is None
        assert await backend.get(parse_address("bob@example.test")) is None
        assert await backend.facts("example.test") == {}
        assert [r.address async for r in backend.export()] == []
        assert len(warnings_about(caplog, "undecodable cache record alice@example.test")) == 1
        assert len(warnings_about(caplog, "undecodable cache record bob@example.test")) == 1
        await backend.put(record(ALICE, now=time.time()))
        await backend.flush()
        stored = await backend.get(alice)
        assert stored is not None and stored.verdict.result is Result.PASS
    finally:
        await backend.aclose()


def set_aside(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.glob("*.corrupt-*"))


def damage_the_middle(path: Path) -> None:
    """Overwrite 8 KB in the middle of a closed (checkpointed) cache file."""
    wal = Path(f"{path}-wal")
    assert not wal.exists() or wal.stat().st_size == 0
    size = path.stat().st_size
    with path.open("r+b") as file:
        file.seek(size // 2)
        file.write(b"\xff" * 8192)


async def test_a_damaged_sqlite_cache_is_set_aside_and_a_fresh_one_started(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "cache.sqlite3"
    backend = SQLiteBackend(path)
    now = time.time()
    for n in range(3000):
        await backend.put(record(f"user{n}@example.test", now=now))
    await backend.aclose()
    damage_the_middle(path)

    caplog.set_level(logging.WARNING)
    reopened = SQLiteBackend(path)
    try:
        errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
        assert len(errors) == 1 and "is damaged" in errors[0] and "moved it to" in errors[0]
        assert [name for name in set_aside(tmp_path) if name.startswith("cache.sqlite3.corrupt-")
                and not name.endswith(("-wal", "-shm"))]
        assert await reopened.get(parse_address("user1@example.test")) is None
        await reopened.put(record(ALICE, now=time.time()))
        await reopened.flush()
        assert await reopened.get(parse_address(ALICE)) is not None
    finally:
        await reopened.aclose()
    with sqlite3.connect(path) as connection:
        assert connection.execute("PRAGMA quick_check").fetchone()[0] == "ok"


async def test_a_sound_sqlite_cache_is_kept(tmp_path: Path,
                                            caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "cache.sqlite3"
    first = SQLiteBackend(path)
    await first.put(record(ALICE, now=time.time()))
    await first.aclose()
    second = SQLiteBackend(path)
    try:
        assert await second.get(parse_address(ALICE)) is not None
    finally:
        await second.aclose()
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert set_aside(tmp_path) == []


@pytest.fixture
async def mail_world(world: World) -> World:
    await world.mx("example.test", {"127.0.0.2": MXScript(
        rcpt=[(ALICE, Reply(250, "2.1.5 Ok"))])})
    return world


def redis_verifier(world: World, url: str) -> Verifier:
    return Verifier(world.config(cache={"url": url, "pass_refresh": 0}))


@pytest.mark.peers
@pytest.mark.parametrize("garbage", [b"not|a|record", b"1|2", b"\xff\xfe", b"x|9e99|{}"])
async def test_redis_record_that_does_not_decode_is_called_out_then_overwritten(
    mail_world: World, redis_url: str, caplog: pytest.LogCaptureFixture, garbage: bytes
) -> None:
    client = redis.Redis.from_url(redis_url)
    client.set(RECORD_KEY, garbage)
    async with redis_verifier(mail_world, redis_url) as verifier:
        first = await verifier.verify(ALICE)
        second = await verifier.verify(ALICE)
    assert first.result is Result.PASS and not first.cached
    assert second.result is Result.PASS and second.cached
    assert mail_world.server("127.0.0.2").rcpts.count(ALICE) == 1
    assert len(warnings_about(caplog, "undecodable cache record")) == 1
    stored = client.get(RECORD_KEY)
    assert stored is not None and stored != garbage
    assert not warnings_about(caplog, "unavailable")


@pytest.mark.peers
@pytest.mark.parametrize("key", [RECORD_KEY, "cbv:{example.test}:facts",
                                 "cbv:{example.test}:index", "cbv:{example.test}:rate"])
async def test_a_key_of_the_wrong_type_never_marks_redis_down(
    mail_world: World, redis_url: str, caplog: pytest.LogCaptureFixture, key: str
) -> None:
    client = redis.Redis.from_url(redis_url)
    client.rpush(key, "wrong", "type")
    async with redis_verifier(mail_world, redis_url) as verifier:
        verdict = await verifier.verify(ALICE)
        assert verdict.result is Result.PASS
        other = await verifier.verify("x@other.test")
        assert other.result is not Result.PASS
    assert not warnings_about(caplog, "unavailable")
    assert client.exists("cbv:{other.test}:rate"), "limits are still shared through Redis"
    assert len(warnings_about(caplog, "refused a command")) <= 1


@pytest.mark.peers
async def test_wrong_typed_cache_keys_are_replaced_by_the_next_verdict(
    mail_world: World, redis_url: str
) -> None:
    client = redis.Redis.from_url(redis_url)
    for key in (RECORD_KEY, "cbv:{example.test}:index"):
        client.rpush(key, "wrong")
    async with redis_verifier(mail_world, redis_url) as verifier:
        await verifier.verify(ALICE)
    assert client.type(RECORD_KEY) == b"string"
    assert client.type("cbv:{example.test}:index") == b"set"

