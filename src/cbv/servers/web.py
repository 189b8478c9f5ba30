"""The HTTP listener: the API app served by uvicorn embedded in the daemon, on the
daemon's event loop. The daemon opens and closes it like its other listeners and owns
the signals; uvicorn only speaks HTTP on the sockets it is given."""

from __future__ import annotations

import asyncio
import logging

import uvicorn

from cbv.endpoint import Endpoint
from cbv.servers.http_api import build_app, guarded
from cbv.servers.listen import listening_socket
from cbv.servers.logs import event
from cbv.servers.runtime import Runtime

LOG = logging.getLogger("cbv.http")
KEEP_ALIVE = 30  # seconds an idle client connection stays open
MAX_HEAD = 16_384  # a request head still incomplete after this many bytes is refused


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


class HttpListener:
    """One app for the daemon's life; a uvicorn server for each address it listens on
    (a reload that moves the listener opens another, and the old one's connections
    are still served until they close)."""

    def __init__(self, runtime: Runtime) -> None:
        _adopt_uvicorn_logs()
        self._app = guarded(build_app(runtime), runtime)
        self._servers: list[uvicorn.Server] = []

    async def open(self, endpoint: Endpoint) -> asyncio.Server:
        """Raises ListenError as `listen()` does."""
        sock = listening_socket(endpoint)
        config = uvicorn.Config(
            self._app, lifespan="off", log_config=None, access_log=False, ws="none",
            http="h11", interface="asgi3", proxy_headers=False, server_header=False,
            date_header=False, timeout_keep_alive=KEEP_ALIVE,
            h11_max_incomplete_event_size=MAX_HEAD,
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
