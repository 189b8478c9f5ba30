"""The smtpcbd line protocol of qpsmtpd's `smtp_callback` plugin (and Exim `${readsocket}`).

The client sends one line, the sender as qpsmtpd formats it (`<a@b>`, `<>` for the null
sender), and reads one line `CODE:msg:addr:server:timestamp:expire`. The plugin splits
that line on ':', so no field may hold one; CR and LF would end it early.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from cbv.text import ascii_line

MAX_LINE = 1024
MAX_MESSAGE = 200
NO_SERVER = "-"


class Code(StrEnum):
    OK = "OK"
    FAIL = "FAIL"
    TEMPFAIL = "TEMPFAIL"


@dataclass(frozen=True, slots=True)
class CallbackRequest:
    """`sender` without angle brackets; "" is the null sender."""

    sender: str


@dataclass(frozen=True, slots=True)
class BadRequest:
    reason: str


CallbackEvent = CallbackRequest | BadRequest


class LineParser:
    """Incremental: one event per line; a last line may come without its newline. A line
    over the limit is a BadRequest as soon as the limit is passed, not when (or if) its
    newline comes; the rest of it is skipped."""

    def __init__(self, max_line: int = MAX_LINE) -> None:
        self._max_line = max_line
        self._buffer = bytearray()
        self._overlong = False  # skipping the rest of a line that was too long
        self._ended = False

    def feed(self, data: bytes) -> list[CallbackEvent]:
        """`receive()` then every event completed so far."""
        self.receive(data)
        return list(iter(self.next_event, None))

    def receive(self, data: bytes) -> None:
        self._buffer += data

    def end_of_input(self) -> list[CallbackEvent]:
        """The client closed its side: what is left is the last line, if anything."""
        self.end_of_input_reached()
        return list(iter(self.next_event, None))

    def end_of_input_reached(self) -> None:
        """From now on `next_event()` takes what is left as the last line."""
        self._ended = True

    def next_event(self) -> CallbackEvent | None:
        buffer = self._buffer
        end = buffer.find(b"\n")
        if self._overlong:
            if end < 0:
                buffer.clear()
                return None
            del buffer[: end + 1]
            self._overlong = False
            end = buffer.find(b"\n")
        if end < 0:
            if len(buffer) > self._max_line:
                buffer.clear()
                self._overlong = True
                return BadRequest(f"line longer than {self._max_line} bytes")
            if not (self._ended and buffer):
                return None
            end = len(buffer)
        line = bytes(buffer[:end])
        del buffer[: end + 1]
        return parse_line(line, self._max_line)


def parse_line(line: bytes, max_line: int = MAX_LINE) -> CallbackEvent:
    """`<a@b>` or a bare `a@b`; `<>` and an empty line are the null sender.

    Only framing is judged here; whether the text is a valid mailbox is the verifier's
    question (a bad one is a FAIL with reason bad_syntax, not a protocol error).
    """
    if len(line) > max_line:
        return BadRequest(f"line longer than {max_line} bytes")
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError:
        return BadRequest("request is not UTF-8")
    text = text.removesuffix("\r").strip(" \t")
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in text):
        return BadRequest("request contains a control character")
    if text.startswith("<") or text.endswith(">"):
        if not (text.startswith("<") and text.endswith(">")) or len(text) < 2:
            return BadRequest("unbalanced angle brackets")
        text = text[1:-1].strip(" \t")
    return CallbackRequest(text)


def clean_field(text: str, limit: int = MAX_MESSAGE) -> str:
    """Printable ASCII, ':' turned into ';', so the plugin's split(/:/) sees six fields."""
    clean = " ".join(ascii_line(text).replace(":", ";").split())
    return clean if len(clean) <= limit else clean[: limit - 3] + "..."


def format_response(
    code: Code, message: str, address: str, server: str, timestamp: int, expire: int
) -> bytes:
    """One line, `CODE:msg:addr:server:timestamp:expire`, times in epoch seconds."""
    fields = (
        code.value,
        clean_field(message),
        clean_field(address),
        clean_field(server) or NO_SERVER,
        str(int(timestamp)),
        str(int(expire)),
    )
    return (":".join(fields) + "\n").encode("ascii")
