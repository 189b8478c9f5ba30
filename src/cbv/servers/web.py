"""The HTTP listener: the API app served by uvicorn embedded in the daemon, on the
daemon's event loop. The daemon opens and closes it like its other listeners and owns
the signals; uvicorn only speaks HTTP on the sockets it is given."""

from __future__ import annotations

import asyncio
import logging
import math
import re

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from cbv.endpoint import Endpoint
from cbv.servers.admission import ConnectionCap
from cbv.servers.http_api import build_app, guarded
from cbv.servers.listen import listening_socket
from cbv.servers.logs import event
from cbv.servers.runtime import Runtime

LOG = logging.getLogger("cbv.http")
MAX_HEAD = 16_384  # a request head longer than this is refused, however it arrives
_HEAD_END = re.compile(rb"\r?\n\r?\n")  # h11 takes a bare LF as a line end too
_HEAD_TOO_LONG = (b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
                  b"content-type: text/plain; charset=utf-8\r\nconnection: close\r\n"
                  b"content-length: %d\r\n\r\n%s")


class _UvicornLog(logging.Handler):
    """uvicorn's warnings and errors as one cbv log line each, without tracebacks."""

    def emit(self, record: logging.LogRecord) -> None:
        event(LOG, max(record.levelno, logging.WARNING), record.getMessage())


def _adopt_uvicorn_logs() -> None:
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers = [_UvicornLog()] if name == "uvicorn" else []
        logger.setLevel(logging.WARNING)
        logger.propagate = name != "uvicorn"


class _RequestHeadDeadline(H11Protocol):
    """uvicorn counts every byte as activity, so a client that never sends a request, or
    trickles its head a byte at a time (slowloris), keeps its connection for ever. As on
    cbv's other listeners, only a complete request counts: its head must arrive within the
    idle timeout (uvicorn's keep-alive setting) after connecting or after the last answer.

    h11 limits only a head still incomplete, so a long head in one write would pass: the
    head's bytes are counted here as they come, and past MAX_HEAD the client gets 431.
    The listener's connection cap is kept here too."""

    _deadline: asyncio.TimerHandle | None = None
    _answered: object = None
    _head_bytes = 0
    _admitted = False
    cap: ConnectionCap
    runtime: Runtime

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        if not self.cap.admit(self.runtime.generation.config.server.max_connections):
            transport.close()
            return
        self._admitted = True
        super().connection_made(transport)
        self._await_request()

    def data_received(self, data: bytes) -> None:
        if not self._admitted:
            return
        if self.conn.their_state is h11.IDLE and not self._head_within_limit(data):
            return
        super().data_received(data)
        if self.conn.their_state is not h11.IDLE:
            self._head_bytes = 0
        if self.cycle is not self._answered:
            self._cancel_deadline()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._await_request()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self._admitted:
            return
        self._admitted = False
        self.cap.release()
        self._cancel_deadline()
        super().connection_lost(exc)

    def _head_within_limit(self, data: bytes) -> bool:
        """Counts `data` as part of the request head until the head's end; past the limit
        the client is answered 431 and closed."""
        end = _HEAD_END.search(data)
        self._head_bytes += end.end() if end else len(data)
        if self._head_bytes <= MAX_HEAD:
            return True
        event(LOG, logging.WARNING, "HTTP request head too long, connection closed",
              limit=MAX_HEAD, client=_client_text(self.client))
        message = f"Request head longer than {MAX_HEAD} bytes.".encode()
        self.transport.write(_HEAD_TOO_LONG % (len(message), message))
        self.transport.close()
        self._cancel_deadline()
        return False

    def _await_request(self) -> None:
        self._cancel_deadline()
        self._answered = self.cycle
        self._deadline = self.loop.call_later(self.timeout_keep_alive, self._overdue)

    def _cancel_deadline(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _overdue(self) -> None:
        self._deadline = None
        idle = self.cycle is None or self.cycle.response_complete
        if self.cycle is self._answered and idle:
            self.transport.close()


def _client_text(client: tuple[str, int] | None) -> str:
    return "" if client is None else f"{client[0]}:{client[1]}"


def _connection_class(runtime: Runtime) -> type[_RequestHeadDeadline]:
    """The protocol class of one listener: its own connection cap, its runtime's limit."""
    return type("HttpConnection", (_RequestHeadDeadline,),
                {"cap": ConnectionCap("http"), "runtime": runtime})


class HttpListener:
    """One app for the daemon's life; a uvicorn server for each address it listens on
    (a reload that moves the listener opens another, and the old one's connections
    are still served until they close)."""

    def __init__(self, runtime: Runtime) -> None:
        _adopt_uvicorn_logs()
        self._runtime = runtime
        self._app = guarded(build_app(runtime), runtime)
        self._protocol = _connection_class(runtime)
        self._servers: list[uvicorn.Server] = []

    def _idle_timeout(self) -> int:
        """uvicorn takes whole seconds; `server.idle_timeout` may be fractional."""
        return max(1, math.ceil(self._runtime.generation.config.server.idle_timeout))

    async def open(self, endpoint: Endpoint) -> asyncio.Server:
        """Raises ListenError as `listen()` does."""
        sock = listening_socket(endpoint)
        config = uvicorn.Config(
            self._app, lifespan="off", log_config=None, access_log=False, ws="none",
            http=self._protocol, interface="asgi3", proxy_headers=False, server_header=False,
            date_header=False, timeout_keep_alive=self._idle_timeout(),
            h11_max_incomplete_event_size=MAX_HEAD + 1,  # the limit is kept before h11
        )
        config.load()
        server = uvicorn.Server(config)
        server.lifespan = config.lifespan_class(config)
        await server.startup(sockets=[sock])
        self._servers.append(server)
        return server.servers[0]

    async def close(self, grace: float) -> None:
        """Stop accepting, let responses in flight finish within `grace` seconds."""
        for server in self._servers:
            server.config.timeout_graceful_shutdown = max(1, int(grace))
        await asyncio.gather(*(server.shutdown() for server in self._servers))
        self._servers.clear()
