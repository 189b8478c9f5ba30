"""Milter responses, filter to MTA: typed responses into packets, and back (sans I/O).

The encoder refuses what an MTA would misread: a reply code outside 4xx/5xx, CR, LF or
NUL in a reply text, a header name with a colon. '%' in a reply text is doubled on the
wire, because Sendmail uses the text as a printf format and Postfix undoes the doubling.
The decoder is the MTA's side, for tests that play the MTA.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

from cbv.protocol.milter_wire import (
    DEFAULT_MAX_PACKET,
    SMFIC,
    SMFIF,
    SMFIM,
    SMFIP,
    SMFIR,
    EventDecoder,
    MilterEncodingError,
    MilterProtocolError,
    Packet,
    PayloadReader,
    encode_packet,
    encode_string,
    encode_uint32,
)

MAX_REPLY_LENGTH = 980
"""libmilter's MAXREPLYLEN: the longest reply line smfi_setreply accepts."""

_STAGES = frozenset(SMFIM)
_INT32_MAX = 0x7FFF_FFFF  # header indexes are C ints at both ends
_REPLY = re.compile(r"([45][0-9][0-9])(?: (.*))?", re.DOTALL)
_ENHANCED = re.compile(r"([45])\.([0-9]{1,3})\.([0-9]{1,3})(?: (.*))?", re.DOTALL)
_PERCENT_PAIR = re.compile(r"%(.|$)", re.DOTALL)


@dataclass(frozen=True, slots=True)
class NegotiationReply:
    """The filter's answer to OPTNEG: its version, the actions it will use, the protocol
    flags it asks for, and optionally which macros it wants at which stage."""

    code: ClassVar[SMFIC] = SMFIC.OPTNEG
    version: int
    actions: SMFIF
    protocol: SMFIP
    symbol_lists: tuple[tuple[int, str], ...] = ()

    @classmethod
    def from_payload(cls, payload: bytes) -> NegotiationReply:
        reader = PayloadReader(payload, "negotiation reply")
        version, actions, protocol = reader.uint32(), reader.uint32(), reader.uint32()
        lists: list[tuple[int, str]] = []
        while not reader.at_end:
            stage = reader.uint32()
            stage = SMFIM(stage) if stage in _STAGES else stage
            lists.append((stage, reader.string()))
        return cls(version, SMFIF(actions), SMFIP(protocol), tuple(lists))

    def payload(self) -> bytes:
        data = bytearray(
            encode_uint32(self.version, "version")
            + encode_uint32(int(self.actions), "actions")
            + encode_uint32(int(self.protocol), "protocol flags")
        )
        for stage, names in self.symbol_lists:
            data += encode_uint32(stage, "macro stage") + encode_string(names, "macro list")
        return bytes(data)


@dataclass(frozen=True, slots=True)
class Continue:
    code: ClassVar[SMFIR] = SMFIR.CONTINUE


@dataclass(frozen=True, slots=True)
class Accept:
    """Accept the message (or, at CONNECT and HELO, the whole connection) unfiltered."""

    code: ClassVar[SMFIR] = SMFIR.ACCEPT


@dataclass(frozen=True, slots=True)
class Reject:
    code: ClassVar[SMFIR] = SMFIR.REJECT


@dataclass(frozen=True, slots=True)
class Tempfail:
    code: ClassVar[SMFIR] = SMFIR.TEMPFAIL


@dataclass(frozen=True, slots=True)
class Discard:
    code: ClassVar[SMFIR] = SMFIR.DISCARD


@dataclass(frozen=True, slots=True)
class Progress:
    """Still working: resets the MTA's timeout, and is not the answer."""

    code: ClassVar[SMFIR] = SMFIR.PROGRESS


@dataclass(frozen=True, slots=True)
class Skip:
    code: ClassVar[SMFIR] = SMFIR.SKIP


@dataclass(frozen=True, slots=True)
class ReplyCode:
    """Reject (5xx) or tempfail (4xx) with this SMTP reply: `550 5.1.7 text` on the wire."""

    code: ClassVar[SMFIR] = SMFIR.REPLYCODE
    reply_code: int
    enhanced: str | None
    text: str

    @classmethod
    def from_payload(cls, payload: bytes) -> ReplyCode:
        reader = PayloadReader(payload, "reply code")
        line = reader.string()
        reader.end()
        if "\r" in line or "\n" in line:
            raise reader.fail("multi-line replies are not supported")
        reply = _REPLY.fullmatch(line)
        if reply is None:
            raise reader.fail(f"{line[:20]!r} does not start with a 4xx or 5xx code")
        code, rest = int(reply.group(1)), reply.group(2) or ""
        enhanced = _ENHANCED.fullmatch(rest)
        if enhanced is not None and enhanced.group(1) == reply.group(1)[0]:
            rest = enhanced.group(4) or ""
            return cls(code, ".".join(enhanced.group(1, 2, 3)), _unescape_percent(rest))
        return cls(code, None, _unescape_percent(rest))

    @property
    def line(self) -> str:
        """The reply as the SMTP client will see it."""
        return _reply_line(self.reply_code, self.enhanced, self.text)

    def payload(self) -> bytes:
        if not 400 <= self.reply_code <= 599:
            raise MilterEncodingError(f"reply code {self.reply_code} is not 4xx or 5xx")
        _check_reply_text(self.text, "reply text")
        if self.enhanced is None:
            if _starts_with_enhanced(self.text, self.reply_code):
                raise MilterEncodingError(
                    "reply text starts with an enhanced status code: pass it as `enhanced`"
                )
        elif not _is_enhanced_for(self.enhanced, self.reply_code):
            raise MilterEncodingError(
                f"enhanced code {self.enhanced!r} does not fit reply code {self.reply_code}"
            )
        line = _reply_line(self.reply_code, self.enhanced, self.text.replace("%", "%%"))
        if len(line) > MAX_REPLY_LENGTH:
            raise MilterEncodingError(
                f"reply of {len(line)} characters exceeds the {MAX_REPLY_LENGTH}-character limit"
            )
        return encode_string(line, "reply")


def _reply_line(reply_code: int, enhanced: str | None, text: str) -> str:
    return " ".join(part for part in (str(reply_code), enhanced, text) if part)


def _is_enhanced_for(enhanced: str, reply_code: int) -> bool:
    match = _ENHANCED.fullmatch(enhanced)
    return match is not None and match.group(4) is None and int(match.group(1)) == reply_code // 100


def _starts_with_enhanced(text: str, reply_code: int) -> bool:
    match = _ENHANCED.fullmatch(text)
    return match is not None and int(match.group(1)) == reply_code // 100


def _unescape_percent(text: str) -> str:
    """As Postfix reads it: `%%` is one `%`, and a lone `%` is dropped."""
    return _PERCENT_PAIR.sub(lambda match: match.group(1), text)


def _check_reply_text(text: str, what: str) -> None:
    """Printable ASCII and tabs only: anything else can end or corrupt the SMTP reply."""
    for char in text:
        if not (char == "\t" or " " <= char <= "~"):
            names = {"\r": "CR", "\n": "LF", "\0": "NUL"}
            shown = names.get(char, f"U+{ord(char):04X}")
            raise MilterEncodingError(f"{what} contains {shown}; only printable ASCII can go")


def _check_header(name: str, value: str) -> None:
    if not name or any(not ("!" <= char <= "~") or char == ":" for char in name):
        raise MilterEncodingError(
            f"header name {name!r} must be printable ASCII without spaces or ':'"
        )
    if "\r" in value or re.search(r"\n(?![ \t])", value):
        raise MilterEncodingError(
            "header value may contain LF only to fold (followed by a space or tab), never CR"
        )


def _header_payload(name: str, value: str) -> bytes:
    _check_header(name, value)
    return encode_string(name, "header name") + encode_string(value, "header value")


def _header_index(index: int, lowest: int, what: str) -> bytes:
    if not lowest <= index <= _INT32_MAX:
        raise MilterEncodingError(f"{what} {index} out of range")
    return encode_uint32(index, what)


@dataclass(frozen=True, slots=True)
class AddHeader:
    """Append a header (needs SMFIF_ADDHDRS); sent only at end of message."""

    code: ClassVar[SMFIR] = SMFIR.ADDHEADER
    name: str
    value: str

    @classmethod
    def from_payload(cls, payload: bytes) -> AddHeader:
        reader = PayloadReader(payload, "add header")
        name, value = reader.string(), reader.string()
        reader.end()
        return cls(name, value)

    def payload(self) -> bytes:
        return _header_payload(self.name, self.value)


@dataclass(frozen=True, slots=True)
class InsertHeader:
    """Insert a header at `index` (0 is the top; needs SMFIF_ADDHDRS)."""

    code: ClassVar[SMFIR] = SMFIR.INSHEADER
    index: int
    name: str
    value: str

    @classmethod
    def from_payload(cls, payload: bytes) -> InsertHeader:
        reader = PayloadReader(payload, "insert header")
        index, name, value = reader.uint32(), reader.string(), reader.string()
        reader.end()
        return cls(index, name, value)

    def payload(self) -> bytes:
        index = _header_index(self.index, 0, "insert header index")
        return index + _header_payload(self.name, self.value)


@dataclass(frozen=True, slots=True)
class ChangeHeader:
    """Replace the `index`-th header called `name` (1 is the first); an empty value
    deletes it. Needs SMFIF_CHGHDRS."""

    code: ClassVar[SMFIR] = SMFIR.CHGHEADER
    index: int
    name: str
    value: str

    @classmethod
    def from_payload(cls, payload: bytes) -> ChangeHeader:
        reader = PayloadReader(payload, "change header")
        index, name, value = reader.uint32(), reader.string(), reader.string()
        reader.end()
        return cls(index, name, value)

    def payload(self) -> bytes:
        index = _header_index(self.index, 1, "change header index")
        return index + _header_payload(self.name, self.value)


@dataclass(frozen=True, slots=True)
class Quarantine:
    """Hold the message in the MTA's quarantine (needs SMFIF_QUARANTINE)."""

    code: ClassVar[SMFIR] = SMFIR.QUARANTINE
    reason: str

    @classmethod
    def from_payload(cls, payload: bytes) -> Quarantine:
        reader = PayloadReader(payload, "quarantine")
        reason = reader.string()
        reader.end()
        return cls(reason)

    def payload(self) -> bytes:
        if not self.reason:
            raise MilterEncodingError("quarantine needs a reason")
        _check_reply_text(self.reason, "quarantine reason")
        return encode_string(self.reason, "quarantine reason")


@dataclass(frozen=True, slots=True)
class OtherResponse:
    """A response cbv never sends (recipient or body changes, SHUTDOWN, an unknown byte),
    kept raw so a test MTA can report it."""

    code: int
    data: bytes = b""

    def payload(self) -> bytes:
        return self.data


_EmptyResponse = Continue | Accept | Reject | Tempfail | Discard | Progress | Skip

Response = (
    NegotiationReply
    | Continue
    | Accept
    | Reject
    | Tempfail
    | Discard
    | Progress
    | Skip
    | ReplyCode
    | AddHeader
    | InsertHeader
    | ChangeHeader
    | Quarantine
    | OtherResponse
)

FINAL_RESPONSES = (Continue, Accept, Reject, Tempfail, Discard, Skip, ReplyCode)
"""Responses that settle a command; Progress and message changes come before one."""


def _empty(response: type[_EmptyResponse]) -> Callable[[bytes], Response]:
    def parse(payload: bytes) -> Response:
        if payload:
            raise MilterProtocolError(
                f"malformed {response.code.name}: {len(payload)} bytes of data where none belong"
            )
        return response()

    return parse


_PARSERS: dict[int, Callable[[bytes], Response]] = {
    SMFIC.OPTNEG: NegotiationReply.from_payload,
    SMFIR.CONTINUE: _empty(Continue),
    SMFIR.ACCEPT: _empty(Accept),
    SMFIR.REJECT: _empty(Reject),
    SMFIR.TEMPFAIL: _empty(Tempfail),
    SMFIR.DISCARD: _empty(Discard),
    SMFIR.PROGRESS: _empty(Progress),
    SMFIR.SKIP: _empty(Skip),
    SMFIR.REPLYCODE: ReplyCode.from_payload,
    SMFIR.ADDHEADER: AddHeader.from_payload,
    SMFIR.INSHEADER: InsertHeader.from_payload,
    SMFIR.CHGHEADER: ChangeHeader.from_payload,
    SMFIR.QUARANTINE: Quarantine.from_payload,
}


def decode_response(packet: Packet) -> Response:
    parse = _PARSERS.get(packet.code)
    if parse is None:
        return OtherResponse(packet.code, packet.payload)
    return parse(packet.payload)


def encode_response(response: Response) -> bytes:
    """Raises MilterEncodingError for anything an MTA would misread."""
    if isinstance(response, _EmptyResponse):
        return encode_packet(response.code)
    return encode_packet(response.code, response.payload())


class ResponseDecoder(EventDecoder[Response]):
    """The MTA's reading side, for tests: bytes in, responses out, in order."""

    def __init__(self, max_packet: int = DEFAULT_MAX_PACKET) -> None:
        super().__init__(decode_response, max_packet)
