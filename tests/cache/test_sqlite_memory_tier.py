"""The SQLite backend's memory tier holds only what was remembered within `memory_ttl`,
however many fresh addresses stream through it (found by the soak: RSS kept growing); it
holds each domain's facts as read for as long, and what this process learns, stores or
purges meanwhile wins over what the disk's thread read."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import pytest_asyncio

from cbv.address import parse_address
from cbv.cache.records import Fact
from cbv.cache.sqlite import SQLiteBackend
from cbv.model import Reason
from tests.cache.helpers import FakeClock, record
from tests.waiting import WITHIN, until


async def test_stale_entries_leave_the_memory_tier_as_fresh_ones_arrive(tmp_path: Path) -> None:
    clock = FakeClock()
    backend = SQLiteBackend(tmp_path / "cache.sqlite3", memory_entries=100_000, memory_ttl=30.0,
                            clock=clock)
    try:
        for n in range(1000):
            await backend.put(record(f"user{n}@fresh.test", now=clock()))
            clock.advance(1.0)
        assert len(backend._tier) <= 31
        await backend.flush()
        assert await backend.get(parse_address("user0@fresh.test")) is not None  # from the file
    finally:
        await backend.aclose()


DOMAIN = "example.test"


class Blocked:
    """Holds the backend's reader or writer thread until released: the test sees what a
    look does while the disk's thread is busy."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def wait(self, _: object = None) -> None:
        self._event.wait(WITHIN)

    def release(self) -> None:
        self._event.set()


def hold_reader(backend: SQLiteBackend) -> Blocked:
    blocked = Blocked()
    backend._reader._executor.submit(blocked.wait)
    return blocked


def hold_writer(backend: SQLiteBackend) -> Blocked:
    blocked = Blocked()
    backend._writer.jobs.put((blocked.wait, None))
    return blocked


def reader_has_work(backend: SQLiteBackend) -> bool:
    return backend._reader._executor._work_queue.qsize() > 0


Pair = tuple[SQLiteBackend, SQLiteBackend, FakeClock]


@pytest_asyncio.fixture
async def two_processes(tmp_path: Path) -> AsyncIterator[Pair]:
    """Two backends on one file, as the daemon and the CLI would have."""
    clock = FakeClock()
    path = tmp_path / "cache.sqlite3"
    here = SQLiteBackend(path, memory_ttl=30.0, clock=clock)
    there = SQLiteBackend(path, memory_ttl=30.0, clock=clock)
    try:
        yield here, there, clock
    finally:
        await here.aclose()
        await there.aclose()


def fact(value: bool, clock: FakeClock) -> Fact:
    return Fact(value, clock() + 3_600)


async def test_facts_are_read_from_the_file_once_per_memory_ttl(
    two_processes: Pair,
) -> None:
    here, there, clock = two_processes
    assert await here.facts(DOMAIN) == {}
    await there.learn(DOMAIN, {"catch_all": fact(True, clock)})
    await there.flush()
    assert await here.facts(DOMAIN) == {}, "the empty answer is held for memory_ttl"
    clock.advance(31.0)
    assert set(await here.facts(DOMAIN)) == {"catch_all"}


async def test_facts_learned_here_are_seen_at_once_beside_those_read(
    two_processes: Pair,
) -> None:
    here, there, clock = two_processes
    await there.learn(DOMAIN, {"catch_all": fact(False, clock)})
    await there.flush()
    assert set(await here.facts(DOMAIN)) == {"catch_all"}
    await here.learn(DOMAIN, {"refuses_null_sender": fact(True, clock)})
    assert set(await here.facts(DOMAIN)) == {"catch_all", "refuses_null_sender"}


async def test_purging_a_domain_drops_the_facts_held_for_it(
    two_processes: Pair,
) -> None:
    here, there, clock = two_processes
    await there.learn(DOMAIN, {"catch_all": fact(True, clock)})
    await there.flush()
    assert set(await here.facts(DOMAIN)) == {"catch_all"}
    await there.purge_domain(DOMAIN)
    await here.purge_domain(DOMAIN)
    assert await here.facts(DOMAIN) == {}
    await there.learn(DOMAIN, {"catch_all": fact(True, clock)})
    await there.flush()
    await here.purge_all()
    assert await here.facts(DOMAIN) == {}


async def test_a_read_that_a_learn_overtook_is_not_held(tmp_path: Path) -> None:
    clock = FakeClock()
    backend = SQLiteBackend(tmp_path / "cache.sqlite3", memory_ttl=30.0, clock=clock)
    try:
        reader, writer = hold_reader(backend), hold_writer(backend)
        reading = asyncio.create_task(backend.facts(DOMAIN))
        await until(lambda: reader_has_work(backend), "the facts' read is queued")
        await backend.learn(DOMAIN, {"catch_all": fact(True, clock)})
        reader.release()
        assert await reading == {}, "read before the learn was committed"
        writer.release()
        await backend.flush()
        assert set(await backend.facts(DOMAIN)) == {"catch_all"}
    finally:
        await backend.aclose()


async def test_a_record_put_while_the_reader_read_wins_over_the_row_read(
    two_processes: Pair,
) -> None:
    here, there, clock = two_processes
    address = parse_address("user@example.test")
    await there.put(record(str(address), Reason.MAILBOX_UNKNOWN, now=clock()))
    await there.flush()
    reader, writer = hold_reader(here), hold_writer(here)
    looking = asyncio.create_task(here.get(address))
    await until(lambda: reader_has_work(here), "the look is queued")
    newer = record(str(address), Reason.ACCEPTED, now=clock())
    await here.put(newer)
    reader.release()
    assert await looking == newer
    assert here.peek(address) == newer
    writer.release()


async def test_a_row_read_while_this_process_purged_it_is_not_held(
    two_processes: Pair,
) -> None:
    here, there, clock = two_processes
    address = parse_address("user@example.test")
    await there.put(record(str(address), now=clock()))
    await there.flush()
    reader, writer = hold_reader(here), hold_writer(here)
    looking = asyncio.create_task(here.get(address))
    await until(lambda: reader_has_work(here), "the look is queued")
    purging = asyncio.create_task(here.purge_address(address))
    await until(lambda: here._writer.jobs.qsize() > 0, "the purge is queued")
    reader.release()
    assert await looking is not None, "read before the purge was committed"
    assert here.peek(address) is None
    writer.release()
    assert await purging == 1
    assert await here.get(address) is None
