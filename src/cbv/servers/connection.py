"""A client connection that answers requests one at a time, in the order they came.

The protocol subclass turns bytes into events (sans-I/O) and an event into the answer's
bytes; this class does the asyncio part: flow control, pipelining, half-close, the
graceful close that shutdown and idle timeouts need, and late answers: when working out
an answer takes too long, a stand-in answer is sent on time and the next requests go on
in a new worker, while the old one finishes its work alone.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from typing import Any, Generic, Protocol, TypeVar

from cbv.servers.logs import failure

LOG = logging.getLogger("cbv.server")
MAX_PIPELINED = 64  # parsed requests held before reading from the client pauses

Event = TypeVar("Event")


class LateAnswer:
    """A stand-in answer for the request being worked out, sent by the tracker's sweep if
    the real one is not in after `answer_within`; `cancel()` it once the real one is."""

    __slots__ = ("_connection", "_respond", "_token", "sent", "since")

    def __init__(self, connection: RequestConnection[Any], token: object,
                 respond: Callable[[], bytes]) -> None:
        self.sent = False
        self.since = time.monotonic()
        self._connection = connection
        self._token = token
        self._respond = respond
        connection._tracker.expect(self)

    def cancel(self) -> None:
        self._connection._tracker.forget(self)

    def send(self) -> None:
        self.sent = self._connection._answer_for(self._token, self._respond)


class RequestConnection(asyncio.Protocol, Generic[Event]):
    one_shot = False  # answer one request, then close (the smtpcbd protocol)

    def __init__(self, tracker: ConnectionTracker) -> None:
        self._tracker = tracker
        self._transport: asyncio.Transport | None = None
        self._pending: deque[Event] = deque()
        self._worker: asyncio.Task[None] | None = None
        self._answering: object | None = None  # token of the request the worker is on
        self._writable = asyncio.Event()
        self._writable.set()
        self._reading_paused = False
        self._eof = False
        self._closing = False
        self.last_active = time.monotonic()

    def parse(self, data: bytes) -> list[Event]:
        raise NotImplementedError

    def parse_end(self) -> list[Event]:
        """Events the end of input completes (a last line without its newline)."""
        return []

    async def answer(self, request: Event) -> bytes:
        """Never raises for a bad request: that gets an answer like any other."""
        raise NotImplementedError

    def answer_late(self, respond: Callable[[], bytes]) -> LateAnswer:
        """For `answer()`: if it is not done within `answer_within`, `respond()` is sent
        instead (check `.sent` afterwards; `.cancel()` it when done)."""
        return LateAnswer(self, self._answering, respond)

    @property
    def busy(self) -> bool:
        return self._worker is not None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        self._tracker.add(self)

    def data_received(self, data: bytes) -> None:
        """Only a complete request counts as activity, so a client trickling a request
        byte by byte (slowloris) is closed after `idle_timeout` like a silent one."""
        if self._closing and self.one_shot:
            return
        events = self.parse(data)
        if events:
            self.last_active = time.monotonic()
            self._pending.extend(events)
            self._start_worker()
        if len(self._pending) >= MAX_PIPELINED and not self._reading_paused:
            self._reading_paused = True
            self._transport_or_fail().pause_reading()

    def eof_received(self) -> bool:
        self._eof = True
        self._pending.extend(self.parse_end())
        if not self._pending and self._worker is None:
            return False  # nothing left to answer: let asyncio close
        self._start_worker()
        return True  # keep our side open to write the answers

    def connection_lost(self, exc: Exception | None) -> None:
        """A worker still answering runs on: the callout it waits for lands in the cache."""
        self._tracker.discard(self)
        self._transport = None
        self._pending.clear()
        self._writable.set()

    def pause_writing(self) -> None:
        self._writable.clear()

    def resume_writing(self) -> None:
        self._writable.set()

    def close_when_idle(self) -> None:
        """Finish the requests already received, then close."""
        self._closing = True
        if self._worker is None and self._transport is not None:
            self._transport.close()

    def abort(self) -> None:
        if self._transport is not None:
            self._transport.abort()

    def _transport_or_fail(self) -> asyncio.Transport:
        if self._transport is None:
            raise ConnectionResetError("connection closed")
        return self._transport

    def _start_worker(self) -> None:
        if self._worker is None and self._pending:
            self._worker = asyncio.get_running_loop().create_task(self._work())

    def _answer_for(self, token: object, respond: Callable[[], bytes]) -> bool:
        """Answer the request `token` now, and hand the connection to a new worker."""
        if self._answering is not token or self._transport is None:
            return False
        self._answering = None
        self._worker = None  # the old worker finishes its request alone, then stops
        self._transport.write(respond())
        self._after_answer()
        return True

    def _after_answer(self) -> None:
        """Once the worker is done: go on with what is pending, or close if it is time."""
        transport = self._transport
        if transport is None:
            return
        self.last_active = time.monotonic()  # idle time counts from the last answer
        if self.one_shot:
            self._pending.clear()
            self._closing = True
        self._resume_reading_if_drained()
        if self._pending:
            self._start_worker()
        elif self._eof or self._closing:
            transport.close()

    def _resume_reading_if_drained(self) -> None:
        if self._reading_paused and len(self._pending) < MAX_PIPELINED // 2:
            self._reading_paused = False
            self._transport_or_fail().resume_reading()

    async def _work(self) -> None:
        me = asyncio.current_task()
        try:
            while self._pending and self._worker is me:
                token = self._answering = object()
                response = await self.answer(self._pending.popleft())
                if self._answering is not token:
                    return  # answered late: a new worker has the connection
                self._answering = None
                await self._writable.wait()
                self._transport_or_fail().write(response)
                self._resume_reading_if_drained()
                if self.one_shot:
                    break
            if self._worker is me:
                self._worker = None
                self._after_answer()
        except ConnectionResetError:
            pass
        except Exception as exc:
            failure(LOG, "connection failed", exc)
            self.abort()
        finally:
            if self._worker is me:
                self._worker = None


class Tracked(Protocol):
    last_active: float

    @property
    def busy(self) -> bool: ...

    def close_when_idle(self) -> None: ...

    def abort(self) -> None: ...


class ConnectionTracker:
    """Every open client connection, for late answers, idle timeouts and a graceful
    shutdown."""

    def __init__(self) -> None:
        self._connections: set[Tracked] = set()
        self._empty = asyncio.Event()
        self._empty.set()
        self._late: set[LateAnswer] = set()

    def expect(self, late: LateAnswer) -> None:
        self._late.add(late)

    def forget(self, late: LateAnswer) -> None:
        self._late.discard(late)

    def answer_overdue(self, answer_within: float) -> None:
        """Send the stand-in answer of every request waited on for `answer_within`."""
        cutoff = time.monotonic() - answer_within
        for late in [late for late in self._late if late.since <= cutoff]:
            self._late.discard(late)
            late.send()

    def __len__(self) -> int:
        return len(self._connections)

    def add(self, connection: Tracked) -> None:
        self._connections.add(connection)
        self._empty.clear()

    def discard(self, connection: Tracked) -> None:
        self._connections.discard(connection)
        if not self._connections:
            self._empty.set()

    def close_idle(self, idle_timeout: float) -> None:
        """Close connections silent for `idle_timeout` seconds and not answering anything."""
        limit = time.monotonic() - idle_timeout
        for connection in [c for c in self._connections if not c.busy and c.last_active < limit]:
            connection.close_when_idle()

    async def drain(self, grace: float) -> int:
        """Close idle connections now, busy ones once answered; abort what outlives
        `grace` seconds. Returns how many were aborted."""
        for connection in list(self._connections):
            connection.close_when_idle()
        try:
            async with asyncio.timeout(grace):
                await self._empty.wait()
        except TimeoutError:
            late = list(self._connections)
            for connection in late:
                connection.abort()
            return len(late)
        return 0
