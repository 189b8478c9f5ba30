"""A client connection that answers requests one at a time, in the order they came.

The protocol subclass turns bytes into requests (sans-I/O) and a request into the answer's
bytes; this class does the asyncio part: flow control, pipelining, half-close, the
graceful close that shutdown and idle timeouts need, the listener's connection cap, and
late answers: when working out an answer takes too long, a stand-in answer is sent on
time and the next requests go on in a new worker, while the old one finishes its work
alone.

Fairness: requests are parsed only as the queue has room for them, so reading pauses
once MAX_PIPELINED requests wait, however many one read brought; the worker lets the
event loop run between answers given without waiting (cached ones), so one client
pipelining thousands cannot hold up the others; and answers stop as soon as the client
is gone.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from typing import Any, ClassVar, Generic, Protocol, TypeVar, cast

from cbv.policy import RequestContext
from cbv.servers.admission import ConnectionCap
from cbv.servers.logs import event, failure
from cbv.servers.runtime import Answered, Generation, Runtime

LOG = logging.getLogger("cbv.server")
MAX_PIPELINED = 64  # parsed requests held before reading from the client pauses

Event = TypeVar("Event")
Event_co = TypeVar("Event_co", covariant=True)
Respond = Callable[[Answered, Generation], bytes]


class IncrementalParser(Protocol[Event_co]):
    """A sans-I/O request parser as the connection drives it: bytes in as they are read,
    requests out only as the connection has room for them."""

    def receive(self, data: bytes) -> None: ...

    def next_event(self) -> Event_co | None:
        """The next complete request, parsed only now; None until more bytes come."""


class StreamTransport(Protocol):
    """What the connection uses of its transport; asyncio's and uvloop's both have it
    (uvloop's does not derive from `asyncio.Transport`)."""

    def write(self, data: bytes) -> None: ...

    def pause_reading(self) -> None: ...

    def resume_reading(self) -> None: ...

    def is_closing(self) -> bool: ...

    def close(self) -> None: ...

    def abort(self) -> None: ...


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
    listener: ClassVar[str]  # the [server] key, for logs, metrics and the connection cap
    one_shot = False  # answer one request, then close (the smtpcbd protocol)

    def __init__(self, runtime: Runtime, tracker: ConnectionTracker,
                 parser: IncrementalParser[Event]) -> None:
        self._runtime = runtime
        self._tracker = tracker
        self._parser = parser
        self._transport: StreamTransport | None = None
        self._admitted = False
        self._pending: deque[Event] = deque()
        self._worker: asyncio.Task[None] | None = None
        self._answering: object | None = None  # token of the request the worker is on
        self._writable = asyncio.Event()  # for the worker to wait on
        self._writable.set()
        self._can_write = True  # the same, read without a call by every answer given at once
        self._reading_paused = False
        self._eof = False
        self._closing = False
        self.last_active = time.monotonic()

    def receive_end(self) -> None:
        """The client closed its side (a last line may then come without its newline)."""

    async def answer(self, request: Event) -> bytes:
        """Never raises for a bad request: that gets an answer like any other."""
        raise NotImplementedError

    def answer_now(self, request: Event) -> bytes | None:
        """The answer if it can be given without waiting for anything (a cached verdict);
        None: `answer` works it out in the worker."""
        return None

    async def decided(self, context: RequestContext, respond: Respond,
                      message_id: str = "") -> bytes:
        """The answer to one request for a decision: `respond()` once the site policy has
        decided, at once when nothing is to be verified. A callout slower than
        `answer_within` is answered "in progress" on time by the tracker's sweep (this
        then returns b"": that request has had its answer) and finishes behind."""
        with self._runtime.generation as generation:
            begun = generation.begin(context, message_id)
            if isinstance(begun, Answered):
                return respond(begun, generation)
            late = LateAnswer(self, self._answering,
                              lambda: respond(generation.in_progress(begun), generation))
            try:
                answered = await generation.finish(begun)
            finally:
                late.cancel()
            return b"" if late.sent else respond(answered, generation)

    def drop_pending(self) -> None:
        """Forget the requests received and not yet answered (a protocol error)."""
        self._pending.clear()

    @property
    def busy(self) -> bool:
        return self._worker is not None

    @property
    def queued(self) -> int:
        """Requests parsed and waiting for their answer."""
        return len(self._pending)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        limit = self._runtime.generation.config.server.max_connections
        if not self._tracker.cap(self.listener).admit(limit):
            transport.close()
            return
        self._admitted = True
        self._transport = cast(StreamTransport, transport)
        self._tracker.add(self)

    def data_received(self, data: bytes) -> None:
        """Only a complete request counts as activity, so a client trickling a request
        byte by byte (slowloris) is closed after `idle_timeout` like a silent one."""
        if self._transport is None or (self._closing and self.one_shot):
            return
        self._parser.receive(data)
        if self._take_requests():
            self.last_active = time.monotonic()
            if self._worker is None and not self._answered_first_now():
                self._start_worker()

    def _answered_first_now(self) -> bool:
        """Answer the first request of this read in this callback, with no worker task,
        when that needs no waiting. One at most: the rest wait for the worker, which
        lets the other connections run between answers."""
        transport = self._transport
        if transport is None or not self._can_write or transport.is_closing():
            return False
        pending = self._pending
        response = self.answer_now(pending[0])
        if response is None:
            return False
        pending.popleft()
        if self._reading_paused:
            self._take_requests()
        transport.write(response)
        self._after_answer()
        return True

    def eof_received(self) -> bool:
        self._eof = True
        self.receive_end()
        self._take_requests()
        if not self._pending and self._worker is None:
            return False  # nothing left to answer: let asyncio close
        self._start_worker()
        return True  # keep our side open to write the answers

    def connection_lost(self, exc: Exception | None) -> None:
        """A worker still answering runs on: the callout it waits for lands in the cache."""
        if not self._admitted:
            return
        unanswered = len(self._pending) + (self._answering is not None)
        if unanswered and exc is not None:
            event(LOG, logging.INFO, "client gone, its answers dropped", listener=self.listener,
                  unanswered=unanswered, reason=str(exc) or type(exc).__name__)
        self._admitted = False
        self._tracker.cap(self.listener).release()
        self._tracker.discard(self)
        self._transport = None
        self._pending.clear()
        self._writable.set()
        self._can_write = True

    def pause_writing(self) -> None:
        self._writable.clear()
        self._can_write = False

    def resume_writing(self) -> None:
        self._writable.set()
        self._can_write = True

    def close_when_idle(self) -> None:
        """Finish the requests already received, then close."""
        self._closing = True
        if self._worker is None and self._transport is not None:
            self._transport.close()

    def abort(self) -> None:
        if self._transport is not None:
            self._transport.abort()

    def _open_transport(self) -> StreamTransport | None:
        """The transport while the client can still be answered."""
        transport = self._transport
        return None if transport is None or transport.is_closing() else transport

    def _take_requests(self) -> bool:
        """Parse requests into the queue while it has room; reading pauses while it is
        full and resumes once it has drained to half. True if any was taken.

        Complete requests are left in the parser only when the queue filled up, which
        pauses reading: so while reading is not paused there is nothing more to take
        until more bytes come."""
        pending = self._pending
        before = len(pending)
        next_event = self._parser.next_event
        while len(pending) < MAX_PIPELINED and (request := next_event()) is not None:
            pending.append(request)
        if len(pending) >= MAX_PIPELINED:
            if not self._reading_paused and (transport := self._open_transport()) is not None:
                self._reading_paused = True
                transport.pause_reading()
        elif (self._reading_paused and len(pending) < MAX_PIPELINED // 2
              and (transport := self._open_transport()) is not None):
            self._reading_paused = False
            transport.resume_reading()
        return len(pending) > before

    def _start_worker(self) -> None:
        if self._worker is None and self._pending:
            self._worker = asyncio.get_running_loop().create_task(self._work())

    def _answer_for(self, token: object, respond: Callable[[], bytes]) -> bool:
        """Answer the request `token` now, and hand the connection to a new worker."""
        transport = self._open_transport()
        if self._answering is not token or transport is None:
            return False
        self._answering = None
        self._worker = None  # the old worker finishes its request alone, then stops
        transport.write(respond())
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
        elif self._reading_paused:
            self._take_requests()
        if self._pending:
            self._start_worker()
        elif self._eof or self._closing:
            transport.close()

    def _next(self) -> Event | None:
        if not self._pending:
            return None
        request = self._pending.popleft()
        if self._reading_paused:
            self._take_requests()
        return request

    async def _work(self) -> None:
        me = asyncio.current_task()
        try:
            while self._worker is me and (request := self._next()) is not None:
                token = self._answering = object()
                response = await self.answer(request)
                if self._answering is not token:
                    return  # answered late: a new worker has the connection
                self._answering = None
                await self._writable.wait()
                transport = self._open_transport()
                if transport is None:
                    return  # the client is gone (connection_lost logs it): nobody to answer
                transport.write(response)
                if self.one_shot:
                    break
                if self._pending:
                    await asyncio.sleep(0)  # the other connections' turn between two answers
            if self._worker is me:
                self._worker = None
                self._after_answer()
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
    """Every open client connection, for late answers, idle timeouts, each listener's
    connection cap and a graceful shutdown."""

    def __init__(self) -> None:
        self._connections: set[Tracked] = set()
        self._caps: dict[str, ConnectionCap] = {}
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

    def cap(self, listener: str) -> ConnectionCap:
        found = self._caps.get(listener)
        if found is None:
            found = self._caps[listener] = ConnectionCap(listener)
        return found

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
