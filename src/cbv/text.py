"""Text from outside made safe to show or to send: the two ways cbv cleans a string."""

from __future__ import annotations


def visible(text: str) -> str:
    """Input echoed back (in a verdict, a log line) with unprintable characters as "?";
    letters of any script stay."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else "?" for c in text)


def ascii_line(text: str) -> str:
    """What an SMTP reply or a protocol field can carry: printable ASCII on one line, other
    printable characters as "?", control characters (CR, LF, tab...) as a space."""
    if text.isascii() and text.isprintable():
        return text
    return "".join(c if " " <= c <= "~" else ("?" if c.isprintable() else " ") for c in text)
