"""Strict RFC 5321 mailbox parsing: nothing that could inject SMTP ever leaves here."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from typing import Final

MAX_LOCAL_PART = 64
MAX_DOMAIN = 255
MAX_PATH = 254

# atext (RFC 5321/6531): every character but ASCII controls, space and the specials. Written
# as a negated class (so is qtext below): a class spanning U+0080-U+10FFFF costs re 3 ms
# to compile each time it appears.
_ATEXT = r'[^\x00-\x20\x7f"(),.:;<>@\[\\\]]'
_DOT_STRING = re.compile(rf"{_ATEXT}+(?:\.{_ATEXT}+)*")
_QUOTED = re.compile(r'"(?:[^\x00-\x1f"\\\x7f]|\\[\x20-\x7e])*"')  # qtextSMTP, quoted-pairSMTP
_LABEL = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)")
_FORBIDDEN_CHARS = {"\r": "CR", "\n": "LF", "\0": "NUL", "<": "'<'", ">": "'>'"}
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class AddressError(ValueError):
    """The address is not a valid RFC 5321 mailbox; the message says why in one line."""


@dataclass(slots=True)
class Address:
    """Written out and hashed once: a callout uses its address as a key a dozen times (the
    flights, the dialogue's outcomes, the verdicts, the cache), and a dataclass's own
    hash builds a tuple each time. Its fields are `Final` rather than the dataclass frozen
    (docs/architecture.md)."""

    local: Final[str]
    domain: Final[str]  # lower-case A-labels, or an address literal such as "[192.0.2.1]"
    _text: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self._text = f"{self.local}@{self.domain}"

    def __str__(self) -> str:
        return self._text

    def __hash__(self) -> int:
        return hash(self._text)

    @property
    def needs_smtputf8(self) -> bool:
        return not self.local.isascii()

    @property
    def literal_ip(self) -> str | None:
        if not self.domain.startswith("["):
            return None
        return self.domain[1:-1].removeprefix("IPv6:").removeprefix("ipv6:")


def _normalise_domain(domain: str) -> str:
    if domain.startswith("[") and domain.endswith("]"):
        inner = domain[1:-1]
        try:
            if inner[:5].lower() == "ipv6:":
                ip = ipaddress.IPv6Address(inner[5:])
                return f"[IPv6:{ip.compressed}]"
            return f"[{ipaddress.IPv4Address(inner)}]"
        except ValueError:
            raise AddressError(f"bad address literal {domain!r}") from None
    domain = domain.removesuffix(".")
    if not domain:
        raise AddressError("empty domain")
    if not domain.isascii():
        import idna  # here: ASCII domains, and `cbv verify` of a non-address, do without it

        try:
            domain = idna.encode(domain, uts46=True).decode("ascii")
        except idna.IDNAError as exc:
            raise AddressError(f"bad internationalised domain: {exc}") from None
    domain = domain.lower()
    if len(domain) > MAX_DOMAIN:
        raise AddressError("domain longer than 255 characters")
    for label in domain.split("."):
        if not _LABEL.fullmatch(label):
            raise AddressError(f"bad domain label {label!r}")
    return domain


def parse_domain(text: str) -> str:
    """A bare domain (for `@domain` arguments and config keys), normalised like addresses."""
    return _normalise_domain(text.strip())


def parse_address(text: str) -> Address:
    """Parse one mailbox; leading and trailing blanks are tolerated, nothing else is."""
    for char, name in _FORBIDDEN_CHARS.items():
        if char in text:
            raise AddressError(f"address contains {name}")
    text = text.strip(" \t")
    if not text:
        raise AddressError("empty address")
    if _CONTROL.search(text):
        raise AddressError("address contains a control character")
    local, sep, domain = text.rpartition("@")
    if not sep:
        raise AddressError("address has no '@'")
    if not local:
        raise AddressError("empty local part")
    if local.startswith('"'):
        if not _QUOTED.fullmatch(local):
            raise AddressError("bad quoted local part")
    elif not _DOT_STRING.fullmatch(local):
        raise AddressError(f"bad local part {local!r}")
    if len(local.encode("utf-8")) > MAX_LOCAL_PART:
        raise AddressError("local part longer than 64 octets")
    address = Address(local, _normalise_domain(domain))
    if len(str(address).encode("utf-8")) > MAX_PATH:
        raise AddressError("address longer than 254 octets")
    return address
