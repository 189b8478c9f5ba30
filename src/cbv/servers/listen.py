"""Opening a listener on "host:port" or "unix:/path", with errors a user can act on."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import stat
from collections.abc import Callable

from cbv.endpoint import Endpoint

UNIX_SOCKET_MODE = 0o666  # as open as the loopback TCP port; restrict with the directory


class ListenError(Exception):
    """A listener cannot be opened; the message names it and says why in one line."""


async def listen(endpoint: Endpoint, factory: Callable[[], asyncio.Protocol]) -> asyncio.Server:
    loop = asyncio.get_running_loop()
    try:
        if endpoint.is_unix:
            _clear_stale_socket(endpoint.path)
            server = await loop.create_unix_server(factory, endpoint.path)
            os.chmod(endpoint.path, UNIX_SOCKET_MODE)
            return server
        return await loop.create_server(factory, endpoint.host, endpoint.port,
                                        reuse_address=True)
    except OSError as exc:
        reason = os.strerror(exc.errno) if exc.errno else str(exc)
        raise ListenError(f"cannot listen on {endpoint}: {reason}") from None


def listening_socket(endpoint: Endpoint) -> socket.socket:
    """A socket listening on `endpoint`, for a server that takes one (the HTTP listener's
    uvicorn), with the same errors as `listen()`."""
    try:
        if endpoint.is_unix:
            _clear_stale_socket(endpoint.path)
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        else:
            family = socket.AF_INET6 if ":" in endpoint.host else socket.AF_INET
            # IPPROTO_TCP named, as asyncio's own listeners do: it then sets TCP_NODELAY
            # on each connection, so an answer written in parts is not held back.
            sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        try:
            if endpoint.is_unix:
                sock.bind(endpoint.path)
                os.chmod(endpoint.path, UNIX_SOCKET_MODE)
            else:
                sock.bind((endpoint.host, endpoint.port))
            sock.listen(socket.SOMAXCONN)
        except OSError:
            sock.close()
            raise
        return sock
    except OSError as exc:
        reason = os.strerror(exc.errno) if exc.errno else str(exc)
        raise ListenError(f"cannot listen on {endpoint}: {reason}") from None


def bound_endpoint(server: asyncio.Server, endpoint: Endpoint) -> Endpoint:
    """Where it really listens (port 0 in the config means any free port)."""
    if endpoint.is_unix or not server.sockets:
        return endpoint
    host, port = server.sockets[0].getsockname()[:2]
    return Endpoint(host=host, port=port)


def remove_socket_file(endpoint: Endpoint) -> None:
    if endpoint.is_unix:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(endpoint.path)


def _clear_stale_socket(path: str) -> None:
    """A socket file left by a crash is removed; a live one or any other file is not."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise ListenError(f"cannot listen on unix:{path}: a file that is not a socket is there")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(path)
    except OSError:
        os.unlink(path)
        return
    finally:
        probe.close()
    raise ListenError(f"cannot listen on unix:{path}: another process is listening there")
