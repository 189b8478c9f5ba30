"""Sans-I/O SMTP client codec: bytes in, replies out; commands in, bytes out.

Replies are checked line by line (RFC 5321 section 4.2): every line carries the
same three-digit code, continuation lines use "-", and nothing grows without
bound, so a hostile server can neither confuse the verdict nor eat memory.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Final

MAX_LINE = 4096
MAX_REPLY_BYTES = 65_536
MAX_REPLY_LINES = 256

_ENHANCED = re.compile(r"([245])\.(\d{1,3})\.(\d{1,3})(?:\s|$)")


class ReplyError(Exception):
    """The server broke the reply grammar; the session cannot be trusted further."""


_UNREAD = ""  # `Reply._enhanced` before the first line was read for it


@dataclass(slots=True, unsafe_hash=True)
class Reply:
    code: Final[int]
    lines: Final[tuple[str, ...]]
    _enhanced: str | None = field(default=_UNREAD, init=False, repr=False, compare=False)

    @property
    def enhanced(self) -> str | None:
        """The RFC 3463 status code, when the first line starts with one of this class.
        Read once: a RCPT reply's is asked for by its classification, its evidence and
        its verdict."""
        found = self._enhanced
        if found is _UNREAD:
            found = _enhanced_of(self.code, self.lines)
            self._enhanced = found
        return found

    @property
    def text(self) -> str:
        """The reply text with enhanced codes removed, lines joined by newlines."""
        enhanced = self.enhanced
        if enhanced is None:
            return "\n".join(self.lines)
        lines = []
        for line in self.lines:  # a generator here was a cell and a frame per reply
            lines.append(line.removeprefix(enhanced).lstrip())
        return "\n".join(lines)

    @property
    def is_positive(self) -> bool:
        return 200 <= self.code < 400

    @property
    def is_transient(self) -> bool:
        return 400 <= self.code < 500

    @property
    def is_permanent(self) -> bool:
        return self.code >= 500

    def __str__(self) -> str:
        return f"{self.code} " + " / ".join(self.lines)


def _enhanced_of(code: int, lines: tuple[str, ...]) -> str | None:
    match = _ENHANCED.match(lines[0]) if lines else None
    if match is None or int(match.group(1)) != code // 100:
        return None
    return ".".join(match.groups())


def _decode(raw: bytes) -> str:
    text = raw.decode("utf-8", "replace")
    if text.isprintable():  # nearly every reply: skip the character-by-character pass
        return text
    return "".join(c if c.isprintable() or c == "\t" else "\ufffd" for c in text)


_CODES = {str(code).encode(): code for code in range(200, 600)}  # an unfamiliar 5yz is
# read by its first digit (RFC 5321 4.3.2); a dict look-up checks and converts at once
_SEPARATORS = (b" ", b"-", b"")  # b"" ends a bare code: "250"


def _grammar_error(raw: bytes) -> ReplyError:
    """What is wrong with a line whose code or separator is not one of the above."""
    if len(raw) < 3 or not raw[:3].isdigit():
        return ReplyError(f"reply line without a three-digit code: {_decode(raw[:40])!r}")
    code = int(raw[:3])
    if not 2 <= code // 100 <= 5:
        return ReplyError(f"reply code {code} out of range")
    return ReplyError(f"bad separator after reply code {code}")


class ReplyParser:
    """Accumulates bytes and yields whole replies; feed it any split of the stream."""

    __slots__ = ("_buffer", "_code", "_error", "_lines", "_max_line", "_max_lines",
                 "_max_reply_bytes", "_reply_bytes")

    def __init__(
        self,
        max_line: int = MAX_LINE,
        max_reply_bytes: int = MAX_REPLY_BYTES,
        max_lines: int = MAX_REPLY_LINES,
    ) -> None:
        self._max_line = max_line
        self._max_reply_bytes = max_reply_bytes
        if max_lines < 1:
            raise ValueError("a reply has at least one line")
        self._max_lines = max_lines
        self._buffer = b""
        self._code: int | None = None
        self._lines: tuple[str, ...] = ()  # of a multi-line reply under way
        self._reply_bytes = 0
        self._error: ReplyError | None = None

    @property
    def pending(self) -> bool:
        """True while anything beyond the replies handed out has arrived."""
        return bool(self._buffer) or bool(self._lines) or self._error is not None

    def feed(self, data: bytes) -> list[Reply]:
        """Whole replies so far; a grammar error surfaces once the good replies are out."""
        if self._error is not None:
            raise self._error
        self._buffer += data
        replies: list[Reply] = []
        try:
            self._parse_into(replies)
        except ReplyError as exc:
            if not replies:
                raise
            self._error = exc
        return replies

    def _parse_into(self, replies: list[Reply]) -> None:
        """One pass over the lines in; a one-line reply (nearly every one) is made here,
        without the checks a multi-line one needs: the parse of a reply was a tenth of a
        callout's Python."""
        lines = self._buffer.split(b"\n")
        self._buffer = lines.pop()  # what follows the last line feed: a line still arriving
        max_line = self._max_line
        for raw in lines:
            if raw[-1:] == b"\r":
                raw = raw[:-1]
            size = len(raw)
            if size > max_line:
                raise ReplyError(f"reply line longer than {max_line} bytes")
            code = _CODES.get(raw[:3])
            separator = raw[3:4]
            if code is None or separator not in _SEPARATORS:
                raise _grammar_error(raw)
            text = _decode(raw[4:])
            if separator != b"-" and self._code is None and size <= self._max_reply_bytes:
                replies.append(Reply(code, (text,)))
                continue
            reply = self._take_line(code, separator != b"-", text, size)
            if reply is not None:
                replies.append(reply)
        if len(self._buffer) > max_line:
            raise ReplyError(f"reply line longer than {max_line} bytes")

    def _take_line(self, code: int, is_last: bool, text: str, size: int) -> Reply | None:
        """A line of a multi-line reply, or one that ends one."""
        if self._code is not None and code != self._code:
            raise ReplyError(f"multi-line reply changed code from {self._code} to {code}")
        lines = (*self._lines, text)
        reply_bytes = self._reply_bytes + size
        if reply_bytes > self._max_reply_bytes or len(lines) > self._max_lines:
            raise ReplyError("multi-line reply too long")
        if not is_last:
            self._code, self._lines, self._reply_bytes = code, lines, reply_bytes
            return None
        self._code, self._lines, self._reply_bytes = None, (), 0
        return Reply(code, lines)


class CommandError(ValueError):
    """A command argument that would break the SMTP line; never sent."""


def encode_command(verb: str, argument: str = "") -> bytes:
    line = f"{verb} {argument}" if argument else verb
    if "\r" in line or "\n" in line or "\0" in line:
        raise CommandError("command contains CR, LF or NUL")
    return line.encode("utf-8") + b"\r\n"


def parse_ehlo_extensions(reply: Reply) -> dict[str, str]:
    """EHLO keywords (upper-cased) to their parameters; the first line is the greeting."""
    extensions: dict[str, str] = {}
    for line in reply.lines[1:]:
        keyword, _, params = line.strip().partition(" ")
        if keyword:
            extensions[keyword.upper()] = params
    return extensions
