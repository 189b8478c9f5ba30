"""Providers whose replies mean more than their words say, recognised by text, by code
and by the MX host name (docs/verdicts.md, "Provider signatures")."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from cbv.model import Reason

_I = re.NOFLAG  # written in lower case, matched against lower-cased text
# Texts whose worded signatures are remembered: a RCPT reply is judged twice in a row.
TEXTS_REMEMBERED = 256


@dataclass(frozen=True, slots=True)
class Signature:
    """A provider's wording. With `enhanced` or `hosts` given, the text alone is not enough:
    the reply must also carry one of the codes, or come from (or name) one of the hosts."""

    name: str
    text: re.Pattern[str]
    reason: Reason
    enhanced: frozenset[str] = frozenset()
    hosts: tuple[str, ...] = ()

    def confirmed(self, text: str, enhanced: str | None, mx_host: str) -> bool:
        """For a `text` with this wording: do the codes or the host bear it out? `text` and
        `mx_host` in lower case."""
        if not self.enhanced and not self.hosts:
            return True
        if enhanced in self.enhanced:
            return True
        return any(mx_host.endswith(host) or host in text for host in self.hosts)


SIGNATURES: tuple[Signature, ...] = (
    # Directory-based edge blocking: Exchange Online refuses recipients not in the directory
    # with a network code (5.4.1) and the words of an access refusal.
    Signature(
        "microsoft-dbeb",
        re.compile(r"recipient address rejected: access denied", _I),
        Reason.MAILBOX_UNKNOWN,
        enhanced=frozenset({"5.4.1"}),
        hosts=("protection.outlook.com", "eop-", "outlook.com"),
    ),
    Signature(
        "microsoft-recipient-not-found",
        re.compile(r"recipientnotfound|recipient not found by smtp address lookup", _I),
        Reason.MAILBOX_UNKNOWN,
    ),
    Signature(
        "microsoft-blocked-ip",
        re.compile(
            r"banned sending ip|traffic not accepted from this ip|part of their network is on "
            r"our block list|\((?:s3140|s3150|s844)\)|as\(1430\)",
            _I,
        ),
        Reason.CLIENT_BLOCKED,
    ),
    # Cisco Secure Email's recipient access table and LDAP accept query reject unknown
    # recipients with the code after a '#'.
    Signature(
        "cisco-ldap-accept",
        re.compile(r"#5\.1\.0 address rejected", _I),
        Reason.MAILBOX_UNKNOWN,
    ),
    # Gmail's "receiving mail at a rate" wears 5.2.1 (mailbox disabled) but says it exists.
    Signature(
        "gmail-recipient-rate",
        re.compile(r"user you are trying to contact is receiving mail", _I),
        Reason.TEMPFAIL,
    ),
    # Proofpoint and Barracuda point to their reputation look-ups.
    Signature(
        "proofpoint-ipcheck",
        re.compile(r"ipcheck\.proofpoint\.com|proofpoint\.com/dnsbl", _I),
        Reason.CLIENT_BLOCKED,
    ),
    Signature(
        "barracuda-reputation",
        re.compile(r"barracuda ?(?:reputation|central)|barracudanetworks\.com/reputation", _I),
        Reason.CLIENT_BLOCKED,
    ),
    Signature(
        "yahoo-no-account",
        re.compile(r"this user doesn't have an? .{0,30}account", _I),
        Reason.MAILBOX_UNKNOWN,
    ),
    Signature(
        "mimecast-invalid-recipient",
        re.compile(r"invalid recipient.{0,80}mimecast|mimecast.{0,80}invalid recipient", _I),
        Reason.MAILBOX_UNKNOWN,
    ),
)


@lru_cache(maxsize=TEXTS_REMEMBERED)
def _worded(text: str) -> tuple[Signature, ...]:
    """The signatures whose wording `text` has, in order."""
    return tuple(s for s in SIGNATURES if s.text.search(text))


def match_signature(text: str, enhanced: str | None, mx_host: str) -> Signature | None:
    for signature in _worded(text):  # a generator made three cells per refusal
        if signature.confirmed(text, enhanced, mx_host):
            return signature
    return None
