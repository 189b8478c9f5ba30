"""UDP and TCP listeners for FakeDNS on a private thread and event loop."""

import asyncio
import concurrent.futures
import contextlib
import errno
import ipaddress
import socket
import threading
from collections.abc import Callable
from typing import cast

# (query packet, arrived over TCP) -> (response packet, delay) or None to stay silent
Handler = Callable[[bytes, bool], tuple[bytes, float] | None]

BIND_ATTEMPTS = 20


def _bind_pair(host: str, port: int) -> tuple[socket.socket, socket.socket]:
    """Resolvers expect UDP and TCP on the same port, so find one free for both."""
    family = socket.AF_INET6 if ipaddress.ip_address(host).version == 6 else socket.AF_INET
    for _ in range(BIND_ATTEMPTS if port == 0 else 1):
        udp = socket.socket(family, socket.SOCK_DGRAM)
        tcp = socket.socket(family, socket.SOCK_STREAM)
        try:
            udp.bind((host, port))
            tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            tcp.bind((host, udp.getsockname()[1]))
            tcp.listen(256)
        except OSError as exc:
            udp.close()
            tcp.close()
            if exc.errno != errno.EADDRINUSE or port != 0:
                raise
            continue
        udp.setblocking(False)
        tcp.setblocking(False)
        return udp, tcp
    raise OSError(errno.EADDRINUSE, f"no port free for both UDP and TCP on {host}")


class _UDPProtocol(asyncio.DatagramProtocol):
    def __init__(self, handler: Handler, loop: asyncio.AbstractEventLoop) -> None:
        self._handler = handler
        self._loop = loop
        self._transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        result = self._handler(data, False)
        if result is None:
            return
        packet, delay = result
        if delay > 0:
            self._loop.call_later(delay, self._send, packet, addr)
        else:
            self._send(packet, addr)

    def _send(self, packet: bytes, addr: tuple[str | int, ...]) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.sendto(packet, addr)


class DNSTransport:
    """Owns its loop in a thread so synchronous tests and foreign loops can query it."""

    def __init__(self, handler: Handler, host: str, port: int) -> None:
        self._handler = handler
        self.host = host
        self.port = port
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("already started")
        udp, tcp = _bind_pair(self.host, self.port)
        self.port = udp.getsockname()[1]
        self._loop = asyncio.new_event_loop()
        ready: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._thread = threading.Thread(
            target=self._run, args=(self._loop, udp, tcp, ready), name="FakeDNS", daemon=True
        )
        self._thread.start()
        ready.result()

    def stop(self) -> None:
        if self._loop is None or self._thread is None:
            return
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop = None
        self._thread = None

    def _run(
        self,
        loop: asyncio.AbstractEventLoop,
        udp: socket.socket,
        tcp: socket.socket,
        ready: concurrent.futures.Future[None],
    ) -> None:
        asyncio.set_event_loop(loop)
        try:
            transport, _ = loop.run_until_complete(
                loop.create_datagram_endpoint(lambda: _UDPProtocol(self._handler, loop), sock=udp)
            )
            server = loop.run_until_complete(asyncio.start_server(self._serve_tcp, sock=tcp))
        except BaseException as exc:
            udp.close()
            tcp.close()
            loop.close()
            ready.set_exception(exc)
            return
        ready.set_result(None)
        try:
            loop.run_forever()
        finally:
            transport.close()
            server.close()
            tasks = asyncio.all_tasks(loop)
            for task in tasks:
                task.cancel()
            loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
            loop.run_until_complete(server.wait_closed())
            loop.close()

    async def _serve_tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Answers in order on one connection; a dropped query just gets no reply."""
        try:
            while True:
                size = int.from_bytes(await reader.readexactly(2), "big")
                result = self._handler(await reader.readexactly(size), True)
                if result is None:
                    continue
                packet, delay = result
                if delay > 0:
                    await asyncio.sleep(delay)
                writer.write(len(packet).to_bytes(2, "big") + packet)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()
