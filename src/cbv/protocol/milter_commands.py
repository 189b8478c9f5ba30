"""Milter commands, MTA to filter: typed events out of packets, and back (sans I/O).

Decoding follows libmilter's engine.c: strings are NUL-terminated, MAIL and RCPT carry
an argument list (the address first, then ESMTP parameters), CONNECT carries the host
name, the address family and, unless the family is unknown, a port and an address.
The encoder exists so that tests (and test MTAs) can speak the other side.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

from cbv.protocol.milter_wire import (
    DEFAULT_MAX_PACKET,
    SMFIA,
    SMFIC,
    SMFIF,
    SMFIP,
    EventDecoder,
    MilterEncodingError,
    MilterProtocolError,
    Packet,
    PayloadReader,
    encode_packet,
    encode_string,
    encode_uint32,
)

_IPV6_TAG = "ipv6:"  # Sendmail writes "IPv6:2001:db8::1"; libmilter's mi_inet_pton skips it
_FAMILIES = frozenset(SMFIA)
_COMMAND_BYTES = frozenset(SMFIC)


@dataclass(frozen=True, slots=True)
class OptionNegotiation:
    """The MTA's offer: its protocol version, the actions it allows, the steps it can
    leave out or let go unanswered."""

    code: ClassVar[SMFIC] = SMFIC.OPTNEG
    version: int
    actions: SMFIF
    protocol: SMFIP

    @classmethod
    def from_payload(cls, payload: bytes) -> OptionNegotiation:
        reader = PayloadReader(payload, "option negotiation")
        version, actions, protocol = reader.uint32(), reader.uint32(), reader.uint32()
        # Like libmilter, ignore anything after the three numbers: room for extensions.
        return cls(version, SMFIF(actions), SMFIP(protocol))

    def payload(self) -> bytes:
        return (
            encode_uint32(self.version, "version")
            + encode_uint32(int(self.actions), "actions")
            + encode_uint32(int(self.protocol), "protocol flags")
        )


@dataclass(frozen=True, slots=True)
class DefineMacro:
    """Macro values for the command that follows (`for_command`, an SMFIC byte).

    Names come as the MTA spells them: `{auth_authen}`, or one letter such as `i`.
    """

    code: ClassVar[SMFIC] = SMFIC.MACRO
    for_command: int
    macros: tuple[tuple[str, str], ...] = ()

    @classmethod
    def from_payload(cls, payload: bytes) -> DefineMacro:
        reader = PayloadReader(payload, "macro definition")
        for_command = reader.byte()
        strings = reader.strings()
        if len(strings) % 2:
            raise reader.fail(f"macro {strings[-1]!r} has no value")
        pairs = tuple(zip(strings[::2], strings[1::2], strict=True))
        return cls(_command_byte(for_command), pairs)

    def payload(self) -> bytes:
        if not 0 <= self.for_command <= 0xFF:
            raise MilterEncodingError(f"macro command {self.for_command} is not one byte")
        data = bytearray((self.for_command,))
        for name, value in self.macros:
            data += encode_string(name, "macro name") + encode_string(value, "macro value")
        return bytes(data)


@dataclass(frozen=True, slots=True)
class Connect:
    """The SMTP client. `port` and `address` are 0 and "" when the family is unknown;
    an IPv6 address comes without Sendmail's "IPv6:" tag."""

    code: ClassVar[SMFIC] = SMFIC.CONNECT
    hostname: str
    family: SMFIA
    port: int = 0
    address: str = ""

    @classmethod
    def from_payload(cls, payload: bytes) -> Connect:
        reader = PayloadReader(payload, "connect")
        hostname = reader.string()
        family_byte = reader.byte()
        if family_byte not in _FAMILIES:
            raise reader.fail(f"unknown address family byte 0x{family_byte:02x}")
        family = SMFIA(family_byte)
        if family is SMFIA.UNKNOWN:
            reader.end()
            return cls(hostname, family)
        port = reader.uint16()
        address = reader.string()
        reader.end()
        if family is SMFIA.INET6 and address.lower().startswith(_IPV6_TAG):
            address = address[len(_IPV6_TAG) :]
        if not _is_address_of(family, address):
            raise reader.fail(f"{address!r} is not an address of family {chr(family)}")
        return cls(hostname, family, port, address)

    def payload(self) -> bytes:
        data = encode_string(self.hostname, "host name") + bytes((self.family,))
        if self.family is SMFIA.UNKNOWN:
            if self.port or self.address:
                raise MilterEncodingError("an unknown family carries no port or address")
            return data
        if not 0 <= self.port <= 0xFFFF:
            raise MilterEncodingError(f"port {self.port} out of range")
        if not _is_address_of(self.family, self.address):
            raise MilterEncodingError(f"{self.address!r} is not an address of {self.family.name}")
        return data + self.port.to_bytes(2, "big") + encode_string(self.address, "address")


def _is_address_of(family: SMFIA, address: str) -> bool:
    if family is SMFIA.UNIX:
        return True
    version = 4 if family is SMFIA.INET else 6
    try:
        return ipaddress.ip_address(address).version == version
    except ValueError:
        return False


@dataclass(frozen=True, slots=True)
class Helo:
    code: ClassVar[SMFIC] = SMFIC.HELO
    name: str

    @classmethod
    def from_payload(cls, payload: bytes) -> Helo:
        return cls(_single_string(payload, "HELO"))

    def payload(self) -> bytes:
        return encode_string(self.name, "HELO name")


def _single_string(payload: bytes, what: str) -> str:
    reader = PayloadReader(payload, what)
    text = reader.string()
    reader.end()
    return text


def _arguments(payload: bytes, what: str) -> tuple[str, ...]:
    reader = PayloadReader(payload, what)
    args = reader.strings()
    if not args:
        raise reader.fail("no address")
    return args


def _encode_arguments(args: tuple[str, ...], what: str) -> bytes:
    if not args:
        raise MilterEncodingError(f"{what} needs an address")
    return b"".join(encode_string(arg, f"{what} argument") for arg in args)


@dataclass(frozen=True, slots=True)
class Mail:
    """MAIL FROM: `args[0]` is the sender as the MTA has it (`<a@b>`, `<>`), then the
    ESMTP parameters (`SIZE=1000`)."""

    code: ClassVar[SMFIC] = SMFIC.MAIL
    args: tuple[str, ...]

    @property
    def sender(self) -> str:
        return self.args[0]

    @property
    def parameters(self) -> tuple[str, ...]:
        return self.args[1:]

    @classmethod
    def from_payload(cls, payload: bytes) -> Mail:
        return cls(_arguments(payload, "MAIL"))

    def payload(self) -> bytes:
        return _encode_arguments(self.args, "MAIL")


@dataclass(frozen=True, slots=True)
class Rcpt:
    """RCPT TO: `args[0]` is the recipient, then the ESMTP parameters."""

    code: ClassVar[SMFIC] = SMFIC.RCPT
    args: tuple[str, ...]

    @property
    def recipient(self) -> str:
        return self.args[0]

    @property
    def parameters(self) -> tuple[str, ...]:
        return self.args[1:]

    @classmethod
    def from_payload(cls, payload: bytes) -> Rcpt:
        return cls(_arguments(payload, "RCPT"))

    def payload(self) -> bytes:
        return _encode_arguments(self.args, "RCPT")


@dataclass(frozen=True, slots=True)
class Header:
    code: ClassVar[SMFIC] = SMFIC.HEADER
    name: str
    value: str

    @classmethod
    def from_payload(cls, payload: bytes) -> Header:
        reader = PayloadReader(payload, "header")
        name, value = reader.string(), reader.string()
        reader.end()
        return cls(name, value)

    def payload(self) -> bytes:
        return encode_string(self.name, "header name") + encode_string(self.value, "header value")


@dataclass(frozen=True, slots=True)
class Body:
    code: ClassVar[SMFIC] = SMFIC.BODY
    chunk: bytes

    @classmethod
    def from_payload(cls, payload: bytes) -> Body:
        return cls(payload)

    def payload(self) -> bytes:
        return self.chunk


@dataclass(frozen=True, slots=True)
class EndOfMessage:
    """The final dot. libmilter lets the MTA attach a last body chunk; Postfix and
    Sendmail send none."""

    code: ClassVar[SMFIC] = SMFIC.BODYEOB
    chunk: bytes = b""

    @classmethod
    def from_payload(cls, payload: bytes) -> EndOfMessage:
        return cls(payload)

    def payload(self) -> bytes:
        return self.chunk


@dataclass(frozen=True, slots=True)
class UnknownSmtpCommand:
    """An SMTP command the MTA did not recognise (SMFIC_UNKNOWN), as the client sent it."""

    code: ClassVar[SMFIC] = SMFIC.UNKNOWN
    line: str

    @classmethod
    def from_payload(cls, payload: bytes) -> UnknownSmtpCommand:
        return cls(_single_string(payload, "unknown SMTP command"))

    def payload(self) -> bytes:
        return encode_string(self.line, "SMTP command")


@dataclass(frozen=True, slots=True)
class Data:
    code: ClassVar[SMFIC] = SMFIC.DATA


@dataclass(frozen=True, slots=True)
class EndOfHeaders:
    code: ClassVar[SMFIC] = SMFIC.EOH


@dataclass(frozen=True, slots=True)
class Abort:
    """The transaction ended without a message (RSET, or a rejection elsewhere); the
    connection goes on."""

    code: ClassVar[SMFIC] = SMFIC.ABORT


@dataclass(frozen=True, slots=True)
class Quit:
    code: ClassVar[SMFIC] = SMFIC.QUIT


@dataclass(frozen=True, slots=True)
class QuitNewConnection:
    """This SMTP connection is over, and the next one reuses the milter connection: a
    CONNECT follows, without a new negotiation."""

    code: ClassVar[SMFIC] = SMFIC.QUIT_NC


@dataclass(frozen=True, slots=True)
class UnknownCommand:
    """A command byte this protocol version does not define; kept so the server can
    answer it (CONTINUE) instead of dropping the connection."""

    code: int
    data: bytes = b""

    def payload(self) -> bytes:
        return self.data


_EmptyCommand = Data | EndOfHeaders | Abort | Quit | QuitNewConnection

Command = (
    OptionNegotiation
    | DefineMacro
    | Connect
    | Helo
    | Mail
    | Rcpt
    | Header
    | EndOfHeaders
    | Body
    | EndOfMessage
    | Data
    | UnknownSmtpCommand
    | Abort
    | Quit
    | QuitNewConnection
    | UnknownCommand
)


def _empty(command: type[_EmptyCommand]) -> Callable[[bytes], Command]:
    def parse(payload: bytes) -> Command:
        if payload:
            raise MilterProtocolError(
                f"malformed {command.code.name}: {len(payload)} bytes of data where none belong"
            )
        return command()

    return parse


_PARSERS: dict[int, Callable[[bytes], Command]] = {
    SMFIC.OPTNEG: OptionNegotiation.from_payload,
    SMFIC.MACRO: DefineMacro.from_payload,
    SMFIC.CONNECT: Connect.from_payload,
    SMFIC.HELO: Helo.from_payload,
    SMFIC.MAIL: Mail.from_payload,
    SMFIC.RCPT: Rcpt.from_payload,
    SMFIC.HEADER: Header.from_payload,
    SMFIC.BODY: Body.from_payload,
    SMFIC.BODYEOB: EndOfMessage.from_payload,
    SMFIC.UNKNOWN: UnknownSmtpCommand.from_payload,
    SMFIC.DATA: _empty(Data),
    SMFIC.EOH: _empty(EndOfHeaders),
    SMFIC.ABORT: _empty(Abort),
    SMFIC.QUIT: _empty(Quit),
    SMFIC.QUIT_NC: _empty(QuitNewConnection),
}


def decode_command(packet: Packet) -> Command:
    """Raises MilterProtocolError for malformed data; an unknown byte is an event."""
    parse = _PARSERS.get(packet.code)
    if parse is None:
        return UnknownCommand(packet.code, packet.payload)
    return parse(packet.payload)


def encode_command(command: Command) -> bytes:
    """Raises MilterEncodingError for values that cannot be framed (a NUL in a string)."""
    if isinstance(command, _EmptyCommand):
        return encode_packet(command.code)
    return encode_packet(command.code, command.payload())


class CommandDecoder(EventDecoder[Command]):
    """The filter's reading side: bytes in, commands out, in order."""

    def __init__(self, max_packet: int = DEFAULT_MAX_PACKET) -> None:
        super().__init__(decode_command, max_packet)


def _command_byte(value: int) -> int:
    """The SMFIC member when there is one, so reprs and logs read `SMFIC.MAIL`."""
    return SMFIC(value) if value in _COMMAND_BYTES else value
