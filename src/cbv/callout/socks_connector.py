"""Connections through an egress's SOCKS5 proxy: the thin asyncio adapter around the
`Socks5Handshake` codec, and the connector that picks direct or proxy per egress."""

from __future__ import annotations

import asyncio

from cbv.callout.connector import Connector, DirectConnector, EgressFailed, Stream
from cbv.callout.plan import Target
from cbv.egress.table import Egress
from cbv.protocol.socks5 import ProxyFailed, Socks5Handshake, TargetUnreachable


class Socks5Connector:
    """Dials the proxy at the address the configuration names (loopback or private is fine
    there: the administrator chose it), then asks it to CONNECT to the target's IP.

    The proxy must answer and authenticate within `handshake_timeout`: a proxy that
    stalls is the egress's failure, while the wait after the CONNECT is the target's
    (the caller's timeout bounds the whole).
    """

    def __init__(self, handshake_timeout: float) -> None:
        self._handshake_timeout = handshake_timeout

    async def connect(self, target: Target, egress: Egress) -> Stream:
        proxy = egress.proxy
        assert proxy is not None
        handshake = Socks5Handshake(proxy, target.ip, target.port)
        try:
            async with asyncio.timeout(self._handshake_timeout):
                reader, writer = await asyncio.open_connection(proxy.host, proxy.port)
        except TimeoutError:
            raise EgressFailed(f"egress {egress.name}: {proxy} did not answer in time") from None
        except OSError as exc:
            raise EgressFailed(
                f"egress {egress.name}: cannot reach {proxy}: {exc.strerror or exc}") from None
        try:
            await self._negotiate(handshake, reader, writer)
        except BaseException as exc:
            writer.transport.abort()
            raise self._blame(egress, handshake, exc) from None
        return reader, writer

    async def _negotiate(self, handshake: Socks5Handshake, reader: asyncio.StreamReader,
                         writer: asyncio.StreamWriter) -> None:
        async with asyncio.timeout(self._handshake_timeout) as until_authenticated:
            while not handshake.done:
                if handshake.connect_sent:
                    until_authenticated.reschedule(None)  # the caller's timeout from here
                outgoing = handshake.data_to_send()
                if outgoing:
                    writer.write(outgoing)
                    await writer.drain()
                handshake.feed(await reader.readexactly(handshake.needed()))

    @staticmethod
    def _blame(egress: Egress, handshake: Socks5Handshake, exc: BaseException
               ) -> BaseException:
        """The target's failure stays as it is; the proxy's becomes EgressFailed."""
        proxy = egress.proxy
        if isinstance(exc, TargetUnreachable | asyncio.CancelledError):
            return exc
        if isinstance(exc, TimeoutError):
            return EgressFailed(f"egress {egress.name}: {proxy} stalled in the SOCKS5 handshake")
        if isinstance(exc, ProxyFailed):
            return EgressFailed(f"egress {egress.name}: {exc}")
        if isinstance(exc, OSError | asyncio.IncompleteReadError):
            return EgressFailed(f"egress {egress.name}: {proxy} hung up during the SOCKS5 "
                                "handshake")
        return exc


class EgressConnector:
    """Direct for egresses with a source address (or none), SOCKS5 for proxy egresses."""

    def __init__(self, handshake_timeout: float) -> None:
        self._direct: Connector = DirectConnector()
        self._socks: Connector = Socks5Connector(handshake_timeout)

    async def connect(self, target: Target, egress: Egress) -> Stream:
        if egress.proxy is None:
            return await self._direct.connect(target, egress)
        return await self._socks.connect(target, egress)
