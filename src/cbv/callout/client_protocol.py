"""The asyncio Protocol of a callout's connection: bytes go straight to the reply codec as
they arrive, and the session is woken once a whole reply is in.

Streams cost a StreamReader, a StreamWriter, their protocol, a buffer and a future per read
for every connection; a callout needs none of them. Here a connection is one object, one
`ReplyParser` and at most one future at a time, which is what keeps 10,000 callouts in
flight small (docs/benchmarks.md).
"""

from __future__ import annotations

import asyncio
import ssl

from cbv.callout.pacer import TurnPacer
from cbv.protocol.smtp import Reply, ReplyError, ReplyParser

UNASKED_REPLIES = 64  # replies the server may run ahead of the session before reading pauses


class SmtpClientProtocol(asyncio.Protocol):
    """Replies parsed as they arrive; `arrival()` is a future done once one is ready (or
    the connection failed), `take()` hands them out in order and then the failure."""

    __slots__ = ("_failure", "_loop", "_pacer", "_parser", "_paused", "_ready", "_waiter",
                 "transport")

    def __init__(self, max_reply_bytes: int, pacer: TurnPacer | None = None) -> None:
        self._parser = ReplyParser(max_reply_bytes=max_reply_bytes)
        self._pacer = pacer
        self._ready: list[Reply] = []  # a few at most; a deque's first block is 600 bytes
        self._waiter: asyncio.Future[None] | None = None
        self._failure: BaseException | None = None
        self._paused = False
        self._loop: asyncio.AbstractEventLoop | None = None  # asked for once, in arrival()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is no asyncio.Transport

    def data_received(self, data: bytes) -> None:
        if self._failure is not None:
            return
        try:
            replies = self._parser.feed(data)
        except ReplyError as exc:
            self._fail(exc)
            return
        if replies:
            self._ready.extend(replies)
            self._wake()
            if len(self._ready) > UNASKED_REPLIES and self.transport is not None:
                self.transport.pause_reading()  # a server flooding replies waits for us
                self._paused = True

    def eof_received(self) -> None:
        self._fail(ConnectionResetError("connection closed by the server"))

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(exc or ConnectionResetError("connection closed by the server"))

    def _fail(self, exc: BaseException) -> None:
        if self._failure is None:
            self._failure = exc
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if self._pacer is None:
                if not waiter.done():
                    waiter.set_result(None)
            else:
                self._pacer.wake(waiter)

    @property
    def has_reply(self) -> bool:
        """A reply (or the failure that ends them) is there to take without waiting."""
        return bool(self._ready) or self._failure is not None

    @property
    def pending(self) -> bool:
        """Anything arrived beyond the replies taken: replies, a partial one, an error."""
        return bool(self._ready) or self._parser.pending or isinstance(self._failure, ReplyError)

    def arrival(self) -> asyncio.Future[None]:
        """Done once `take()` has something to give."""
        loop = self._loop
        if loop is None:  # on Python 3.11 each get_running_loop() is a getpid system call
            loop = self._loop = asyncio.get_running_loop()
        waiter = loop.create_future()
        if self.has_reply:
            waiter.set_result(None)
        else:
            self._waiter = waiter
        return waiter

    def take(self) -> Reply:
        """The next reply; once they are all taken, the failure that ended the connection."""
        if self._ready:
            reply = self._ready.pop(0)
            if self._paused and len(self._ready) <= UNASKED_REPLIES:
                self._paused = False
                if self.transport is not None:
                    self.transport.resume_reading()
            return reply
        if self._failure is not None:
            raise self._failure
        raise RuntimeError("take() before arrival()")

    def write(self, data: bytes) -> None:
        assert self.transport is not None
        self.transport.write(data)

    async def start_tls(self, context: ssl.SSLContext, handshake_seconds: float) -> None:
        """Upgrade to TLS in place: the replies that follow come through the new transport."""
        assert self.transport is not None
        loop = asyncio.get_running_loop()
        transport = await loop.start_tls(
            self.transport, self, context, ssl_handshake_timeout=handshake_seconds)
        assert transport is not None
        self.transport = transport

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()
