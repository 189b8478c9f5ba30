"""Postfix policy delegation (SMTPD_POLICY_README), sans I/O.

A request is `name=value` lines ended by an empty line; a connection carries many, and
they may arrive split anywhere or several in one read. The answer is `action=...` and an
empty line. Bytes go in, `PolicyRequest`/`MalformedRequest` events come out, in order, one
per request, so every request gets exactly one answer even when it is unusable.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from itertools import repeat

from cbv.text import ascii_line, visible

MAX_LINE = 8192
MAX_REQUEST = 65_536
MAX_ATTRIBUTES = 256
MAX_ACTION_TEXT = 450  # Postfix replies are one SMTP line; leave room for its own prefix
_ATEXT = r"[A-Za-z0-9!#$%&'*+\-/=?^_`{|}~\u0080-\U0010ffff]"
_DOT_ATOM = re.compile(rf"{_ATEXT}+(?:\.{_ATEXT}+)*")

DUNNO = "DUNNO"


@dataclass(slots=True)
class PolicyRequest:
    """The attributes of one request; unknown ones are kept and ignored by the caller."""

    attributes: Mapping[str, str]

    def get(self, name: str) -> str:
        return self.attributes.get(name, "")

    @property
    def request(self) -> str:
        return self.get("request")

    @property
    def protocol_state(self) -> str:
        return self.get("protocol_state").upper()

    @property
    def sender(self) -> str:
        return self.get("sender")

    @property
    def recipient(self) -> str:
        return self.get("recipient")

    @property
    def instance(self) -> str:
        return self.get("instance")

    @property
    def client_address(self) -> str:
        return self.get("client_address")

    @property
    def sasl_username(self) -> str:
        return self.get("sasl_username")


@dataclass(frozen=True, slots=True)
class MalformedRequest:
    """A request that cannot be used; it still takes its turn in the answers."""

    reason: str


PolicyEvent = PolicyRequest | MalformedRequest


class RequestParser:
    """Incremental: `feed()` any bytes, get the requests completed so far."""

    def __init__(
        self,
        max_line: int = MAX_LINE,
        max_request: int = MAX_REQUEST,
        max_attributes: int = MAX_ATTRIBUTES,
    ) -> None:
        self._max_line = max_line
        self._max_request = max_request
        self._max_attributes = max_attributes
        self._buffer = bytearray()
        self._whole: bytes | None = None  # one whole request received alone, not yet taken
        self._scanned = 0  # where to resume looking for the end of the request
        self._discarding: str | None = None  # why the rest of this request is skipped

    @property
    def pending(self) -> int:
        """Bytes held for unfinished or not yet taken requests."""
        return len(self._buffer) + len(self._whole or b"")

    def feed(self, data: bytes) -> list[PolicyEvent]:
        """`receive()` then every request completed so far."""
        self.receive(data)
        return list(iter(self.next_event, None))

    def receive(self, data: bytes) -> None:
        """Take bytes; nothing is parsed until `next_event()` asks, so a reader that takes
        requests only as it has room for them holds at most what it read unparsed."""
        if self._whole is not None:
            self._buffer += self._whole
            self._whole = None
        if (not self._buffer and len(data) > 2 and data.find(b"\n\n") == len(data) - 2
                and data[:1] != b"\n" and b"\r" not in data):
            self._whole = data  # one whole request alone, the usual read: not buffered
        else:
            self._buffer += data

    def next_event(self) -> PolicyEvent | None:
        """The next complete request, or None until more bytes come."""
        if self._whole is not None:
            whole, self._whole = self._whole, None
            return self._parse(whole[:-2])
        if not self._buffer:
            return None
        while (end := self._find_end()) is not None:
            body_end, next_start = end
            body = bytes(self._buffer[:body_end])
            del self._buffer[:next_start]
            self._scanned = 0
            reason, self._discarding = self._discarding, None
            if reason is not None:
                return MalformedRequest(reason)
            if body:
                return self._parse(body)
        self._check_unfinished()
        return None

    def _find_end(self) -> tuple[int, int] | None:
        """(end of the attribute lines, start of the next request) once an empty line is in."""
        buffer = self._buffer
        if buffer[:1] == b"\n":
            return 0, 1
        if buffer[:2] == b"\r\n":
            return 0, 2
        start = max(self._scanned - 2, 0)
        lf = buffer.find(b"\n\n", start)
        # Only a CRLF end before the LF one matters: never scan the rest of a long buffer.
        crlf = buffer.find(b"\n\r\n", start, lf + 2 if lf >= 0 else len(buffer))
        if lf < 0 and crlf < 0:
            self._scanned = len(buffer)
            return None
        if crlf < 0 or 0 <= lf < crlf:
            return lf, lf + 2
        return crlf, crlf + 3

    def _check_unfinished(self) -> None:
        """Bound what an unfinished request may hold; past that, skip to its end."""
        buffer = self._buffer
        if self._discarding is None:
            line_start = buffer.rfind(b"\n") + 1
            if len(buffer) - line_start > self._max_line:
                self._discarding = f"line longer than {self._max_line} bytes"
            elif len(buffer) > self._max_request:
                self._discarding = f"request longer than {self._max_request} bytes"
        if self._discarding is not None and len(buffer) > 3:
            self._buffer = bytearray(_discarded_tail(buffer))
            self._scanned = 0

    def _parse(self, body: bytes) -> PolicyEvent:
        """Limits are judged in the order `_check_unfinished` judges them, so a request
        gets the same verdict however it was split."""
        if len(body) > self._max_line and max(map(len, body.split(b"\n"))) > self._max_line:
            return MalformedRequest(f"line longer than {self._max_line} bytes")
        if len(body) > self._max_request:
            return MalformedRequest(f"request longer than {self._max_request} bytes")
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            return MalformedRequest("request is not UTF-8")
        if "\r" in text:
            text = text.replace("\r\n", "\n").removesuffix("\r")
        lines = text.split("\n")
        if len(lines) > self._max_attributes:
            return MalformedRequest(f"more than {self._max_attributes} attributes")
        try:  # split and gathered in C: a Postfix request has some 30 lines
            attributes = dict(map(str.split, lines, repeat("="), repeat(1)))
        except ValueError:  # a line without "="
            return _first_fault(lines)
        if len(attributes) < len(lines) or "" in attributes:
            return _first_fault(lines)
        return PolicyRequest(attributes)


@lru_cache(maxsize=8192)
def external_address(internal: str) -> str:
    """Postfix sends `sender` and `recipient` in its internal form, the local part unquoted
    (`john doe@example.com` for `<"john doe"@example.com>`); this quotes it again, as
    RFC 5321 writes it, when it is not a plain dot-atom."""
    local, at, domain = internal.rpartition("@")
    if not at or _DOT_ATOM.fullmatch(local):
        return internal
    escaped = local.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"@{domain}'


def _first_fault(lines: list[str]) -> MalformedRequest:
    """What is wrong with the first line that spoils the request."""
    seen: set[str] = set()
    for line in lines:
        name, sep, _ = line.partition("=")
        if not sep or not name:
            return MalformedRequest(f"not a name=value line: {_preview(line)}")
        if name in seen:  # which one counts is a guess an attacker could steer
            return MalformedRequest(f"attribute given twice: {_preview(name)}")
        seen.add(name)
    raise AssertionError("every line is a name=value line of its own")


def _discarded_tail(buffer: bytearray) -> bytes:
    """Stands in for skipped bytes: keeps a line end that an empty line may follow."""
    if buffer.endswith(b"\n"):
        return b"x\n"
    if buffer.endswith(b"\n\r"):
        return b"x\n\r"
    return b"x"


def _preview(line: str) -> str:
    shown = visible(line[:40])
    return repr(shown + ("..." if len(line) > 40 else ""))


def one_line(text: str, limit: int = MAX_ACTION_TEXT) -> str:
    """Printable ASCII only: nothing can end the attribute early or upset an SMTP reply."""
    text = ascii_line(text)
    if "  " in text or text[:1] == " " or text[-1:] == " ":
        text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def encode_action(action: str) -> bytes:
    return b"action=" + one_line(action).encode("ascii") + b"\n\n"


def reply_action(code: int, enhanced: str | None, text: str) -> str:
    """`550 5.1.7 text`: Postfix answers with this code, prefixed "<addr>: Sender address
    rejected: " (or "Recipient address", by where check_policy_service is listed)."""
    return " ".join(part for part in (str(code), enhanced, text) if part)


def defer_if_permit_action(enhanced: str | None, text: str) -> str:
    """Postfix defers (450) unless a later restriction rejects outright."""
    return " ".join(part for part in ("DEFER_IF_PERMIT", enhanced, text) if part)


def hold_action(text: str) -> str:
    return f"HOLD {text}"


def prepend_action(name: str, value: str) -> str:
    return f"PREPEND {name}: {value}"


def warn_action(text: str) -> str:
    return f"WARN {text}"
