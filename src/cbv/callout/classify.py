"""What an SMTP reply says about the address, following docs/reasons.md.

Order of evidence: the RFC 3463 enhanced status code, then the basic code and
the stage, then (only without an enhanced code) a short list of phrases.
Only a rejection *of the address* is a failure: a 5xx that rejects the
verifier or its sender says nothing about the mailbox.
"""

from __future__ import annotations

import re

from cbv.model import Reason
from cbv.protocol.smtp import Reply

GREYLIST_PHRASES = re.compile(
    r"grey.?list|gray.?list|postgrey|try again later|please retry|retry later|"
    r"temporarily (?:deferred|rejected)|greylisted",
    re.IGNORECASE,
)
POLICY_PHRASES = re.compile(
    r"block|black.?list|deny.?list|spamhaus|\brbl\b|dnsbl|reputation|policy|"
    r"relay|not permitted|access denied|denied|refused|prohibited|spam|abuse|"
    r"client host|rejected due to|too many|rate limit|banned",
    re.IGNORECASE,
)
MAILBOX_PHRASES = re.compile(
    r"user unknown|unknown user|no such (?:user|mailbox|recipient|address)|"
    r"does not exist|doesn't exist|not exist|invalid (?:recipient|mailbox|address|user)|"
    r"mailbox (?:unavailable|not found|disabled)|unknown (?:recipient|mailbox|address)|"
    r"recipient (?:unknown|not found)|no mailbox|unrouteable|"
    r"user not found|account (?:disabled|closed)",
    re.IGNORECASE,
)
FULL_PHRASES = re.compile(r"mailbox (?:is )?full|over ?quota|quota exceeded", re.IGNORECASE)

# Enhanced subjects about the *sender* (X.1.7, X.1.8): the verifier's MAIL FROM was refused.
_SENDER_SUBJECTS = {"1.7", "1.8"}


def _enhanced_parts(reply: Reply) -> tuple[str, str] | None:
    """(subject, subject.detail) of the enhanced code, or None when absent or 'X.0.0'."""
    enhanced = reply.enhanced
    if enhanced is None:
        return None
    _, subject, detail = enhanced.split(".")
    if subject == "0" and detail == "0":
        return None
    return subject, f"{subject}.{detail}"


def classify_rcpt(reply: Reply) -> Reason:
    """Classify the reply to RCPT TO (or a decisive VRFY)."""
    if reply.is_positive:
        return Reason.ACCEPTED
    if reply.is_transient:
        return _classify_transient(reply)
    parts = _enhanced_parts(reply)
    if parts is not None:
        return _classify_permanent_enhanced(*parts)
    return _classify_permanent_plain(reply)


def _classify_transient(reply: Reply) -> Reason:
    if GREYLIST_PHRASES.search(reply.text):
        return Reason.GREYLISTED
    return Reason.TEMPFAIL


def _classify_permanent_enhanced(subject: str, subject_detail: str) -> Reason:
    if subject_detail in _SENDER_SUBJECTS:
        return Reason.SENDER_REJECTED
    if subject == "1" or subject_detail == "2.1":
        return Reason.MAILBOX_UNKNOWN
    if subject_detail == "2.2":
        return Reason.MAILBOX_FULL
    return Reason.POLICY_REJECTION


def _classify_permanent_plain(reply: Reply) -> Reason:
    text = reply.text
    if POLICY_PHRASES.search(text):
        return Reason.POLICY_REJECTION
    if MAILBOX_PHRASES.search(text):
        return Reason.MAILBOX_UNKNOWN
    if reply.code == 552 or FULL_PHRASES.search(text):
        return Reason.MAILBOX_FULL
    if reply.code in (550, 551, 553):
        return Reason.MAILBOX_UNKNOWN
    return Reason.POLICY_REJECTION


def vrfy_is_decisive(reply: Reply) -> bool:
    """VRFY decides only on 250/251, or a 5xx that names the mailbox (X.1.x)."""
    if reply.code in (250, 251):
        return True
    parts = _enhanced_parts(reply)
    return (
        reply.is_permanent
        and parts is not None
        and classify_rcpt(reply) is Reason.MAILBOX_UNKNOWN
    )


def classify_catch_all_probe(reply: Reply) -> bool | None:
    """A random local part accepted means catch-all; rejected as unknown means not."""
    if reply.is_positive:
        return True
    if reply.is_permanent and classify_rcpt(reply) is Reason.MAILBOX_UNKNOWN:
        return False
    return None


def classify_pre_rcpt_transient(reply: Reply) -> Reason:
    """A 4xx before RCPT (banner, EHLO, MAIL): the host cannot take us now."""
    return _classify_transient(reply)
