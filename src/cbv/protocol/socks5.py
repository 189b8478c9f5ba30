"""The SOCKS5 client handshake (RFC 1928, RFC 1929 username/password), sans-I/O.

socksio encodes and decodes the messages; this class adds what socksio leaves to its
caller: how many bytes the next reply needs (so the adapter never reads past the end of
the handshake into the SMTP greeting), and what each failure means for a callout.
"""

from __future__ import annotations

import ipaddress

from socksio import ProtocolError
from socksio.socks5 import (
    SOCKS5AType,
    SOCKS5AuthMethod,
    SOCKS5AuthMethodsRequest,
    SOCKS5AuthReply,
    SOCKS5Command,
    SOCKS5CommandRequest,
    SOCKS5Connection,
    SOCKS5Reply,
    SOCKS5ReplyCode,
    SOCKS5State,
    SOCKS5UsernamePasswordRequest,
)

from cbv.egress.settings import ProxyAddress

REPLY_HEAD = 4  # VER REP RSV ATYP
PORT_BYTES = 2
ADDRESS_BYTES = {SOCKS5AType.IPV4_ADDRESS.value: 4, SOCKS5AType.IPV6_ADDRESS.value: 16}

# Replies about the target, not the proxy: the next mail exchanger is tried, same egress.
TARGET_FAILURES = {
    SOCKS5ReplyCode.NETWORK_UNREACHABLE: "network unreachable",
    SOCKS5ReplyCode.HOST_UNREACHABLE: "host unreachable",
    SOCKS5ReplyCode.CONNECTION_REFUSED: "connection refused",
    SOCKS5ReplyCode.TTL_EXPIRED: "timed out",
    SOCKS5ReplyCode.GENERAL_SERVER_FAILURE: "general failure",
}


class ProxyFailed(Exception):
    """The proxy cannot be used (refused our credentials, speaks no SOCKS5): next egress."""


class TargetUnreachable(OSError):
    """The proxy could not reach the mail exchanger: next host, same egress."""


class Socks5Handshake:
    """Greets the proxy, authenticates if asked, and asks it to CONNECT to an IP address.

    The target is always an address (the one cbv's target filter approved), never a name
    the proxy would resolve.
    """

    def __init__(self, proxy: ProxyAddress, ip: str, port: int) -> None:
        self._proxy = proxy
        self._request = SOCKS5CommandRequest.from_address(
            SOCKS5Command.CONNECT, (str(ipaddress.ip_address(ip)), port))
        self._connection = SOCKS5Connection()
        self._buffer = b""
        methods = [SOCKS5AuthMethod.NO_AUTH_REQUIRED]
        if proxy.username:
            methods.insert(0, SOCKS5AuthMethod.USERNAME_PASSWORD)
        self._connection.send(SOCKS5AuthMethodsRequest(methods))

    @property
    def done(self) -> bool:
        return self._connection.state is SOCKS5State.TUNNEL_READY

    @property
    def connect_sent(self) -> bool:
        """Once the CONNECT is out, waiting is waiting for the mail exchanger."""
        return self._connection.state is SOCKS5State.CLIENT_AUTHENTICATED

    def data_to_send(self) -> bytes:
        return self._connection.data_to_send()

    def needed(self) -> int:
        """Bytes still to read for the reply under way (0 when none is expected)."""
        if self.done:
            return 0
        if not self.connect_sent:
            return 2 - len(self._buffer)
        if len(self._buffer) < REPLY_HEAD + 1:
            return REPLY_HEAD + 1 - len(self._buffer)
        atype = self._buffer[3:4]
        if atype in ADDRESS_BYTES:
            size = REPLY_HEAD + ADDRESS_BYTES[atype] + PORT_BYTES
        elif atype == SOCKS5AType.DOMAIN_NAME.value:
            size = REPLY_HEAD + 1 + self._buffer[REPLY_HEAD] + PORT_BYTES
        else:
            raise ProxyFailed(f"{self._proxy} sent a malformed SOCKS5 reply")
        return size - len(self._buffer)

    def feed(self, data: bytes) -> None:
        """Take bytes the adapter read (never more than `needed()`); raises on refusal."""
        self._buffer += data
        if self.needed() > 0:
            return
        message, self._buffer = self._buffer, b""
        try:
            reply = self._connection.receive_data(message)
        except ProtocolError:
            raise ProxyFailed(f"{self._proxy} does not speak SOCKS5") from None
        if isinstance(reply, SOCKS5AuthReply):
            self._authenticate(reply)
        elif isinstance(reply, SOCKS5Reply):
            self._connected(reply)
        elif not reply.success:
            raise ProxyFailed(f"{self._proxy} refused the username and password")
        else:
            self._connection.send(self._request)

    def _authenticate(self, reply: SOCKS5AuthReply) -> None:
        if reply.method is SOCKS5AuthMethod.USERNAME_PASSWORD and self._proxy.username:
            self._connection.send(SOCKS5UsernamePasswordRequest(
                self._proxy.username.encode(), self._proxy.password.encode()))
        elif reply.method is SOCKS5AuthMethod.NO_AUTH_REQUIRED:
            self._connection.send(self._request)
        elif reply.method is SOCKS5AuthMethod.USERNAME_PASSWORD:
            raise ProxyFailed(f"{self._proxy} wants a username and password; add them to the URL")
        else:
            raise ProxyFailed(f"{self._proxy} accepts none of our authentication methods")

    def _connected(self, reply: SOCKS5Reply) -> None:
        if reply.reply_code is SOCKS5ReplyCode.SUCCEEDED:
            return
        about_target = TARGET_FAILURES.get(reply.reply_code)
        if about_target is not None:
            raise TargetUnreachable(f"through {self._proxy}: {about_target}")
        raise ProxyFailed(
            f"{self._proxy} refused to connect: {reply.reply_code.name.lower().replace('_', ' ')}")
