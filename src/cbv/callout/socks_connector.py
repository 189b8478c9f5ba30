"""Connections through an egress's SOCKS5 proxy: the thin asyncio adapter around the
`Socks5Handshake` codec, and the connector that picks direct or proxy per egress."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable

from cbv.callout.connector import Connector, DirectConnector, EgressFailed
from cbv.callout.plan import Target
from cbv.egress.table import Egress
from cbv.protocol.socks5 import ProxyFailed, Socks5Handshake, TargetUnreachable


class Socks5Negotiation(asyncio.Protocol):
    """Speaks the handshake on a new connection to the proxy, then hands the connection
    (and any bytes that came after the proxy's last reply) to the session's protocol."""

    def __init__(self, handshake: Socks5Handshake, session: asyncio.Protocol) -> None:
        loop = asyncio.get_running_loop()
        self.authenticated: asyncio.Future[None] = loop.create_future()  # the CONNECT is out
        self.tunnelled: asyncio.Future[None] = loop.create_future()
        self._handshake = handshake
        self._session = session
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]  # uvloop's is no asyncio.Transport
        self._send()

    def data_received(self, data: bytes) -> None:
        if self.tunnelled.done():
            return
        handshake = self._handshake
        try:
            while data and not handshake.done:
                needed = handshake.needed()
                handshake.feed(data[:needed])
                data = data[needed:]
                self._send()
        except (ProxyFailed, TargetUnreachable) as exc:
            self._fail(exc)
            return
        if handshake.done:
            self._hand_over(data)

    def eof_received(self) -> None:
        self._fail(ConnectionResetError("the proxy hung up"))

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(exc or ConnectionResetError("the proxy hung up"))

    def abort(self) -> None:
        if self._transport is not None:
            self._transport.abort()

    def _send(self) -> None:
        outgoing = self._handshake.data_to_send()
        if outgoing and self._transport is not None:
            self._transport.write(outgoing)
        if self._handshake.connect_sent and not self.authenticated.done():
            self.authenticated.set_result(None)

    def _hand_over(self, surplus: bytes) -> None:
        transport = self._transport
        assert transport is not None
        transport.set_protocol(self._session)
        self._session.connection_made(transport)
        if surplus:
            self._session.data_received(surplus)
        self.tunnelled.set_result(None)

    def _fail(self, exc: BaseException) -> None:
        """The first future still awaited gets the failure (the other is never awaited)."""
        for step in (self.authenticated, self.tunnelled):
            if not step.done():
                step.set_exception(exc)
                return


class Socks5Connector:
    """Dials the proxy at the address the configuration names (loopback or private is fine
    there: the administrator chose it), then asks it to CONNECT to the target's IP.

    The proxy must answer and authenticate within `handshake_timeout`: a proxy that
    stalls is the egress's failure, while the wait after the CONNECT is the target's
    (the caller's timeout bounds the whole).
    """

    def __init__(self, handshake_timeout: float) -> None:
        self._handshake_timeout = handshake_timeout

    async def connect(self, target: Target, egress: Egress, protocol: asyncio.Protocol) -> None:
        proxy = egress.proxy
        assert proxy is not None
        handshake = Socks5Handshake(proxy, target.ip, target.port)
        negotiation = Socks5Negotiation(handshake, protocol)
        try:
            async with asyncio.timeout(self._handshake_timeout):
                await asyncio.get_running_loop().create_connection(
                    lambda: negotiation, proxy.host, proxy.port)
        except TimeoutError:
            raise EgressFailed(f"egress {egress.name}: {proxy} did not answer in time") from None
        except OSError as exc:
            raise EgressFailed(
                f"egress {egress.name}: cannot reach {proxy}: {exc.strerror or exc}") from None
        try:
            async with asyncio.timeout(self._handshake_timeout) as until_authenticated:
                await negotiation.authenticated
                until_authenticated.reschedule(None)  # the caller's timeout from here
                await negotiation.tunnelled
        except BaseException as exc:
            negotiation.abort()
            raise self._blame(egress, exc) from None

    @staticmethod
    def _blame(egress: Egress, exc: BaseException) -> BaseException:
        """The target's failure stays as it is; the proxy's becomes EgressFailed."""
        proxy = egress.proxy
        if isinstance(exc, TargetUnreachable | asyncio.CancelledError):
            return exc
        if isinstance(exc, TimeoutError):
            return EgressFailed(f"egress {egress.name}: {proxy} stalled in the SOCKS5 handshake")
        if isinstance(exc, ProxyFailed):
            return EgressFailed(f"egress {egress.name}: {exc}")
        if isinstance(exc, OSError):
            return EgressFailed(f"egress {egress.name}: {proxy} hung up during the SOCKS5 "
                                "handshake")
        return exc


class EgressConnector:
    """Direct for egresses with a source address (or none), SOCKS5 for proxy egresses."""

    def __init__(self, handshake_timeout: float) -> None:
        self._direct: Connector = DirectConnector()
        self._socks: Connector = Socks5Connector(handshake_timeout)

    def connect(self, target: Target, egress: Egress, protocol: asyncio.Protocol
                ) -> Awaitable[None]:
        connector = self._direct if egress.proxy is None else self._socks
        return connector.connect(target, egress, protocol)
