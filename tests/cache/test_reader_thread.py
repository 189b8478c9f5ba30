"""The SQLite reader thread: the reads of one event-loop turn make one trip to the thread,
and each read gets its own answer, error or cancellation."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import AsyncIterator, Callable

import pytest
import pytest_asyncio

from cbv.cache.reader_thread import ReaderThread
from tests.waiting import WITHIN


class CountedReader(ReaderThread):
    """Notes how many reads each trip to the thread takes, and on which threads they run."""

    def __init__(self, connection: sqlite3.Connection) -> None:
        super().__init__(connection)
        self.trips: list[int] = []
        self.threads: set[int] = set()

    def _hand_over(self, loop: asyncio.AbstractEventLoop) -> None:
        self.trips.append(len(self._asked))
        super()._hand_over(loop)


@pytest_asyncio.fixture
async def reader() -> AsyncIterator[CountedReader]:
    connection = sqlite3.connect(":memory:", check_same_thread=False)
    connection.execute("CREATE TABLE t (k INTEGER PRIMARY KEY, v TEXT)")
    connection.executemany("INSERT INTO t VALUES (?, ?)", [(n, f"v{n}") for n in range(10)])
    thread = CountedReader(connection)
    yield thread
    await thread.close()


def value_of(key: int, threads: set[int] | None = None
             ) -> Callable[[sqlite3.Connection], str | None]:
    def query(connection: sqlite3.Connection) -> str | None:
        if threads is not None:
            threads.add(threading.get_ident())
        row = connection.execute("SELECT v FROM t WHERE k = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    return query


async def test_the_reads_of_one_turn_go_to_the_thread_together(reader: CountedReader) -> None:
    answers = await asyncio.gather(*(reader.read(value_of(n, reader.threads))
                                     for n in range(12)))
    assert answers == [f"v{n}" for n in range(10)] + [None, None]
    assert reader.trips == [12]
    assert reader.threads and threading.get_ident() not in reader.threads
    assert await reader.read(value_of(4)) == "v4"
    assert reader.trips == [12, 1]


async def test_a_failing_query_fails_only_its_own_read(reader: CountedReader) -> None:
    def broken(connection: sqlite3.Connection) -> object:
        return connection.execute("SELECT nothing FROM nowhere").fetchone()

    good, bad = await asyncio.gather(reader.read(value_of(1)), reader.read(broken),
                                     return_exceptions=True)
    assert good == "v1"
    assert isinstance(bad, sqlite3.OperationalError)


async def test_a_read_given_up_does_not_disturb_the_others(reader: CountedReader) -> None:
    impatient = asyncio.ensure_future(reader.read(value_of(2)))
    patient = asyncio.ensure_future(reader.read(value_of(3)))
    impatient.cancel()
    assert await patient == "v3"
    assert impatient.cancelled()


async def test_a_read_after_close_fails_at_once() -> None:
    thread = ReaderThread(sqlite3.connect(":memory:", check_same_thread=False))
    await thread.close()
    with pytest.raises(RuntimeError):
        await thread.read(value_of(1))


def test_a_read_left_by_a_stopped_loop_does_not_hold_up_the_next_loop() -> None:
    connection = sqlite3.connect(":memory:", check_same_thread=False)
    connection.execute("CREATE TABLE t (k INTEGER PRIMARY KEY, v TEXT)")
    connection.execute("INSERT INTO t VALUES (2, 'v2')")
    thread = ReaderThread(connection)
    stopped = asyncio.new_event_loop()
    left = stopped.create_task(thread.read(value_of(1)))
    stopped.call_soon(stopped.stop)
    stopped.run_forever()  # the read is asked; its hand-over would come in the next turn
    stopped.close()
    assert not left.done()
    left._log_destroy_pending = False  # type: ignore[attr-defined]  # pending on purpose

    async def next_loop() -> str | None:
        try:
            return await asyncio.wait_for(thread.read(value_of(2)), WITHIN)
        finally:
            await asyncio.wait_for(thread.close(), WITHIN)

    assert asyncio.run(next_loop()) == "v2"
