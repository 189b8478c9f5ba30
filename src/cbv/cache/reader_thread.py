"""The SQLite backend's reads, on a thread of their own so the event loop never waits on
the disk.

The queries asked in one event-loop turn go to the thread as one job, and their answers
come back in one callback. A round trip costs the loop several times what a query does
(a look-up by key is about 5 µs; `run_in_executor` around it about 70 µs of CPU under
load), so a busy daemon shares each trip among the looks of a turn.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import sqlite3
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")

Query = Callable[[sqlite3.Connection], Any]
Asked = list[tuple[Query, "asyncio.Future[Any]"]]
Answered = list[tuple["asyncio.Future[Any]", Any, Exception | None]]


class ReaderThread:
    def __init__(self, connection: sqlite3.Connection) -> None:
        self._connection = connection
        self._executor = concurrent.futures.ThreadPoolExecutor(1, "cbv-sqlite-reader")
        self._asked: Asked = []
        self._asked_on: asyncio.AbstractEventLoop | None = None

    async def read(self, query: Callable[[sqlite3.Connection], T]) -> T:
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[T] = loop.create_future()
        if not self._asked or self._asked_on is not loop:
            # A batch left by a loop that stopped before handing it over is not waited on.
            self._asked, self._asked_on = [], loop
            loop.call_soon(self._hand_over, loop)
        self._asked.append((query, answer))
        return await answer

    async def close(self) -> None:
        await self.read(sqlite3.Connection.close)
        self._executor.shutdown(wait=False)

    def _hand_over(self, loop: asyncio.AbstractEventLoop) -> None:
        asked, self._asked = self._asked, []
        try:
            self._executor.submit(self._run, asked, loop)
        except RuntimeError as exc:  # shut down: the reads fail, as run_in_executor's would
            for _, answer in asked:
                if not answer.done():
                    answer.set_exception(exc)

    def _run(self, asked: Asked, loop: asyncio.AbstractEventLoop) -> None:
        """On the reader thread."""
        answered: Answered = []
        for query, answer in asked:
            try:
                answered.append((answer, query(self._connection), None))
            except Exception as exc:
                answered.append((answer, None, exc))
        loop.call_soon_threadsafe(_deliver, answered)


def _deliver(answered: Answered) -> None:
    for answer, value, error in answered:
        if answer.done():  # its reader went away
            continue
        if error is None:
            answer.set_result(value)
        else:
            answer.set_exception(error)
