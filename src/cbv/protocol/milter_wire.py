"""Sendmail milter protocol, version 6: constants and packet framing (sans I/O).

Every packet is a 4-byte big-endian length, one command byte, then data; the length
counts the command byte. Names follow sendmail's `include/libmilter/mfdef.h` and
`mfapi.h`: `SMFIC.OPTNEG` is `SMFIC_OPTNEG`, and so on.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum, IntFlag
from typing import Generic, TypeVar

SMFI_PROT_VERSION = 6
"""The protocol version cbv speaks (libmilter 8.14 and later, Postfix `milter_protocol = 6`)."""
SMFI_PROT_VERSION_MIN = 2
"""libmilter refuses older MTAs; so does cbv."""

DEFAULT_MAX_PACKET = 1 << 20
"""Largest length field accepted: libmilter's biggest negotiable data size (1 MiB)."""

_LENGTH = struct.Struct(">I")
_UINT32_MAX = 0xFFFF_FFFF


class SMFIC(IntEnum):
    """Commands, MTA to filter."""

    ABORT = ord("A")
    BODY = ord("B")
    CONNECT = ord("C")
    MACRO = ord("D")
    BODYEOB = ord("E")
    HELO = ord("H")
    QUIT_NC = ord("K")
    HEADER = ord("L")
    MAIL = ord("M")
    EOH = ord("N")
    OPTNEG = ord("O")
    QUIT = ord("Q")
    RCPT = ord("R")
    DATA = ord("T")
    UNKNOWN = ord("U")


class SMFIR(IntEnum):
    """Responses, filter to MTA (the negotiation reply reuses `SMFIC.OPTNEG`)."""

    ADDRCPT = ord("+")
    DELRCPT = ord("-")
    ADDRCPT_PAR = ord("2")
    SHUTDOWN = ord("4")
    ACCEPT = ord("a")
    REPLBODY = ord("b")
    CONTINUE = ord("c")
    DISCARD = ord("d")
    CHGFROM = ord("e")
    CONN_FAIL = ord("f")
    ADDHEADER = ord("h")
    INSHEADER = ord("i")
    SETSYMLIST = ord("l")
    CHGHEADER = ord("m")
    PROGRESS = ord("p")
    QUARANTINE = ord("q")
    REJECT = ord("r")
    SKIP = ord("s")
    TEMPFAIL = ord("t")
    REPLYCODE = ord("y")


class SMFIF(IntFlag):
    """Actions: message changes the filter may make at end of message."""

    ADDHDRS = 0x001
    CHGBODY = 0x002
    ADDRCPT = 0x004
    DELRCPT = 0x008
    CHGHDRS = 0x010
    QUARANTINE = 0x020
    CHGFROM = 0x040
    ADDRCPT_PAR = 0x080
    SETSYMLIST = 0x100


class SMFIP(IntFlag):
    """Protocol flags: steps the MTA need not send (NO*), steps the filter will not
    answer (NR_*), and extensions."""

    NOCONNECT = 0x0000_0001
    NOHELO = 0x0000_0002
    NOMAIL = 0x0000_0004
    NORCPT = 0x0000_0008
    NOBODY = 0x0000_0010
    NOHDRS = 0x0000_0020
    NOEOH = 0x0000_0040
    NR_HDR = 0x0000_0080
    NOUNKNOWN = 0x0000_0100
    NODATA = 0x0000_0200
    SKIP = 0x0000_0400
    RCPT_REJ = 0x0000_0800
    NR_CONN = 0x0000_1000
    NR_HELO = 0x0000_2000
    NR_MAIL = 0x0000_4000
    NR_RCPT = 0x0000_8000
    NR_DATA = 0x0001_0000
    NR_UNKN = 0x0002_0000
    NR_EOH = 0x0004_0000
    NR_BODY = 0x0008_0000
    HDR_LEADSPC = 0x0010_0000


class SMFIA(IntEnum):
    """Address families in the CONNECT command."""

    UNKNOWN = ord("U")
    UNIX = ord("L")
    INET = ord("4")
    INET6 = ord("6")


class SMFIM(IntEnum):
    """Protocol stages that a negotiation reply may name a macro list for."""

    CONNECT = 0
    HELO = 1
    ENVFROM = 2
    ENVRCPT = 3
    DATA = 4
    EOM = 5
    EOH = 6


SMFI_V1_ACTS = SMFIF(0x0F)
"""What an MTA that offers no actions (0) means: version 1 actions."""
SMFI_V1_PROT = SMFIP(0x3F)
"""What an MTA that offers no protocol flags (0) means: version 1 steps."""
SMFI_CURR_ACTS = SMFIF(0x1FF)
SMFI_CURR_PROT = SMFIP(0x1F_FFFF)


class MilterProtocolError(Exception):
    """The peer broke the milter protocol; the connection cannot be trusted further."""


class MilterEncodingError(ValueError):
    """A value that cannot be sent as asked (it would break the packet or the SMTP reply)."""


@dataclass(frozen=True, slots=True)
class Packet:
    """One framed packet: the command or response byte and its data."""

    code: int
    payload: bytes


def encode_packet(code: int, payload: bytes = b"") -> bytes:
    if not 0 <= code <= 0xFF:
        raise MilterEncodingError(f"packet code {code} is not one byte")
    if len(payload) >= _UINT32_MAX:
        raise MilterEncodingError(f"packet data of {len(payload)} bytes cannot be framed")
    return _LENGTH.pack(len(payload) + 1) + bytes((code,)) + payload


class MilterDecoder:
    """Incremental framing: `feed()` any bytes, get the packets completed so far.

    A length is judged as soon as its four bytes are in, so a bad or oversized one is
    refused before any of its data is buffered. After an error the decoder stays failed.
    """

    def __init__(self, max_packet: int = DEFAULT_MAX_PACKET) -> None:
        if max_packet < 1:
            raise ValueError("max_packet must be at least 1")
        self._max_packet = max_packet
        self._buffer = bytearray()
        self._error: MilterProtocolError | None = None

    @property
    def pending(self) -> int:
        """Bytes held for an unfinished packet; non-zero at end of input means truncation."""
        return len(self._buffer)

    def feed(self, data: bytes) -> list[Packet]:
        """`receive()` then every packet completed so far."""
        self.receive(data)
        return list(iter(self.next_packet, None))

    def receive(self, data: bytes) -> None:
        """Take bytes; packets are framed only as `next_packet()` asks for them."""
        if self._error is not None:
            raise self._error
        self._buffer += data

    def next_packet(self) -> Packet | None:
        """The next complete packet, or None until more bytes come."""
        if self._error is not None:
            raise self._error
        try:
            return self._next_packet()
        except MilterProtocolError as error:
            self._error = error
            self._buffer.clear()
            raise

    def _next_packet(self) -> Packet | None:
        buffer = self._buffer
        if len(buffer) < _LENGTH.size:
            return None
        (length,) = _LENGTH.unpack_from(buffer)
        if length == 0:
            raise MilterProtocolError("milter packet length 0: it must count the command byte")
        if length > self._max_packet:
            raise MilterProtocolError(
                f"milter packet of {length} bytes exceeds the {self._max_packet}-byte limit"
            )
        end = _LENGTH.size + length
        if len(buffer) < end:
            return None
        packet = Packet(buffer[_LENGTH.size], bytes(buffer[_LENGTH.size + 1 : end]))
        del buffer[:end]
        return packet


EventT = TypeVar("EventT")


class EventDecoder(Generic[EventT]):
    """Framing plus a parser for each packet; like the framing, it stays failed after an
    error, so no event is ever taken from a stream that has gone wrong."""

    def __init__(self, parse: Callable[[Packet], EventT], max_packet: int) -> None:
        self._packets = MilterDecoder(max_packet)
        self._parse = parse
        self._error: MilterProtocolError | None = None

    @property
    def pending(self) -> int:
        return self._packets.pending

    def feed(self, data: bytes) -> list[EventT]:
        """`receive()` then every event completed so far."""
        self.receive(data)
        return list(iter(self.next_event, None))

    def receive(self, data: bytes) -> None:
        if self._error is not None:
            raise self._error
        self._packets.receive(data)

    def next_event(self) -> EventT | None:
        """The next complete packet's event, or None until more bytes come."""
        if self._error is not None:
            raise self._error
        try:
            packet = self._packets.next_packet()
            return None if packet is None else self._parse(packet)
        except MilterProtocolError as error:
            self._error = error
            raise


class PayloadReader:
    """Walks one packet's data; every shortfall is a MilterProtocolError naming `what`."""

    def __init__(self, payload: bytes, what: str) -> None:
        self._payload = payload
        self._offset = 0
        self._what = what

    def fail(self, problem: str) -> MilterProtocolError:
        return MilterProtocolError(f"malformed {self._what}: {problem}")

    @property
    def at_end(self) -> bool:
        return self._offset >= len(self._payload)

    def uint32(self) -> int:
        return self._unpack(">I", "a 4-byte number")

    def uint16(self) -> int:
        return self._unpack(">H", "a 2-byte port")

    def byte(self) -> int:
        return self._unpack(">B", "a byte")

    def string(self) -> str:
        """One NUL-terminated string."""
        end = self._payload.find(b"\0", self._offset)
        if end < 0:
            raise self.fail("string without its terminating NUL")
        raw = self._payload[self._offset : end]
        self._offset = end + 1
        return decode_text(raw)

    def strings(self) -> tuple[str, ...]:
        """NUL-terminated strings up to the end of the data."""
        found: list[str] = []
        while not self.at_end:
            found.append(self.string())
        return tuple(found)

    def end(self) -> None:
        if not self.at_end:
            raise self.fail(f"{len(self._payload) - self._offset} unexpected trailing bytes")

    def _unpack(self, layout: str, what: str) -> int:
        size = struct.calcsize(layout)
        if self._offset + size > len(self._payload):
            raise self.fail(f"truncated before {what}")
        (value,) = struct.unpack_from(layout, self._payload, self._offset)
        self._offset += size
        return int(value)


def decode_text(raw: bytes) -> str:
    """Milter strings are C strings in no stated charset: UTF-8, with any other byte kept
    as a surrogate escape so that encoding gives the same bytes back."""
    return raw.decode("utf-8", errors="surrogateescape")


def encode_string(text: str, what: str) -> bytes:
    """One NUL-terminated string; a NUL inside would cut it short at the peer."""
    if "\0" in text:
        raise MilterEncodingError(f"{what} contains NUL")
    try:
        return text.encode("utf-8", errors="surrogateescape") + b"\0"
    except UnicodeEncodeError as error:
        raise MilterEncodingError(f"{what} is not encodable: {error.reason}") from None


def encode_uint32(value: int, what: str) -> bytes:
    if not 0 <= value <= _UINT32_MAX:
        raise MilterEncodingError(f"{what} {value} does not fit in 32 bits")
    return _LENGTH.pack(value)
