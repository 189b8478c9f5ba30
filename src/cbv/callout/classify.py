"""What an SMTP reply says about the address: the evidence rules of docs/verdicts.md.

Evidence is weighed, not read in one fixed order: a provider signature first; then text
that says the *client* (its IP, its rate, its sender) is refused, which outweighs any
mailbox code; then a specific enhanced code (X.1.1, X.2.1, X.7.x ...); then the words;
a generic enhanced code (X.0.0, X.3.x, X.4.x, X.5.x ...) only when the words say nothing;
last the basic code, read by its first digit when it is not a familiar one. Only a
rejection *of the address* is a failure. Each judgement names the rule that decided.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Final

from cbv.callout import evidence
from cbv.callout.signatures import match_signature
from cbv.model import Reason
from cbv.protocol.smtp import Reply


@dataclass(slots=True)
class Judgement:
    reason: Final[Reason]
    rule: Final[str]  # e.g. "enhanced:5.1.1", "text:client-blocked", "signature:microsoft-dbeb"


# Enhanced codes (class stripped) that decide on their own, with what they decide.
_STRONG_DETAILS: dict[str, Reason] = {
    "1.1": Reason.MAILBOX_UNKNOWN,  # bad destination mailbox address
    "1.2": Reason.MAILBOX_UNKNOWN,  # bad destination system (domain)
    "1.3": Reason.MAILBOX_UNKNOWN,  # bad destination mailbox syntax
    "1.6": Reason.MAILBOX_UNKNOWN,  # mailbox has moved, no forwarding address
    "1.10": Reason.MAILBOX_UNKNOWN,  # recipient address has null MX (RFC 7505)
    "1.7": Reason.SENDER_REJECTED,  # bad sender's mailbox address syntax
    "1.8": Reason.SENDER_REJECTED,  # bad sender's system address
    "2.1": Reason.MAILBOX_UNKNOWN,  # mailbox disabled, not accepting messages
    "2.2": Reason.MAILBOX_FULL,  # mailbox full: it exists
}
# Subjects that are about the verifier or the transaction unless the words say otherwise.
_NOT_MAILBOX_SUBJECTS = {"3", "4", "5", "6", "7"}


# Published replies say what they mean in their first lines; a hostile server's 64 KiB
# reply costs the expressions no more than this many characters.
MAX_WORDS = 1024
# Replies and texts whose readings are remembered: a RCPT reply is read twice in a row (does
# it refuse our sender? what does it say of the address?), each time in several steps.
TEXTS_REMEMBERED = 256


@lru_cache(maxsize=TEXTS_REMEMBERED)
def words_of(reply: Reply) -> str:
    """The reply's text as the evidence rules read it: enhanced code removed, bounded,
    lower-cased."""
    return reply.text[:MAX_WORDS].lower()


@lru_cache(maxsize=TEXTS_REMEMBERED)
def enhanced_code(reply: Reply) -> str | None:
    """The RFC 3463 code: leading (the usual place) or as "(#5.1.1)" after the text (qmail)."""
    if reply.enhanced is not None:
        return reply.enhanced
    match = evidence.TRAILING_ENHANCED.search(words_of(reply))
    if match is None or int(match.group(1)) != reply.code // 100:
        return None
    return ".".join(match.groups())


def judge_rcpt(reply: Reply, mx_host: str = "") -> Judgement:
    """Judge the reply to RCPT TO (or a decisive VRFY)."""
    if reply.is_positive:
        return Judgement(Reason.ACCEPTED, f"code:{reply.code}")
    enhanced = enhanced_code(reply)
    signature = match_signature(words_of(reply), enhanced, mx_host.lower())
    if signature is not None:
        return Judgement(signature.reason, f"signature:{signature.name}")
    if reply.is_transient:
        return judge_transient(reply)
    return _judge_permanent(reply, enhanced)


def classify_rcpt(reply: Reply, mx_host: str = "") -> Reason:
    return judge_rcpt(reply, mx_host).reason


def judge_transient(reply: Reply) -> Judgement:
    """A 4xx: greylisting, a limit on the client, or a passing trouble."""
    text = words_of(reply)
    if evidence.RECIPIENT_BUSY.search(text):
        return Judgement(Reason.TEMPFAIL, "text:recipient-busy")
    if evidence.GREYLIST.search(text):
        return Judgement(Reason.GREYLISTED, "text:greylist")
    client = _client_refusal(text)
    if client is not None:
        passing = client.reason is Reason.SENDER_REJECTED
        return Judgement(Reason.TEMPFAIL if passing else Reason.CLIENT_THROTTLED, client.rule)
    if evidence.RETRY_LATER.search(text):
        return Judgement(Reason.GREYLISTED, "text:retry-later")
    return Judgement(Reason.TEMPFAIL, f"code:{reply.code // 100}xx")


@lru_cache(maxsize=TEXTS_REMEMBERED)
def _client_refusal(text: str) -> Judgement | None:
    """Text that says the sender, the client's rate or the client itself is refused."""
    if not evidence.may_outweigh(text):
        return None
    if evidence.SENDER_REFUSED.search(text):
        return Judgement(Reason.SENDER_REJECTED, "text:sender-refused")
    if evidence.CLIENT_RATE.search(text):
        return Judgement(Reason.CLIENT_THROTTLED, "text:client-rate")
    if evidence.CLIENT_BLOCKED.search(text):
        return Judgement(Reason.CLIENT_BLOCKED, "text:client-blocked")
    return None


@lru_cache(maxsize=TEXTS_REMEMBERED)
def _outweighs_the_code(text: str) -> Judgement | None:
    """Words that outweigh a permanent reply's code: the recipient is busy, or the client
    is refused."""
    if not evidence.may_outweigh(text):
        return None
    if evidence.RECIPIENT_BUSY.search(text):
        return Judgement(Reason.TEMPFAIL, "text:recipient-busy")
    return _client_refusal(text)


def _judge_permanent(reply: Reply, enhanced: str | None) -> Judgement:
    text = words_of(reply)
    outweighing = _outweighs_the_code(text)
    if outweighing is not None:
        return outweighing
    if enhanced is not None:
        _, subject, detail = enhanced.split(".")
        strong = _STRONG_DETAILS.get(f"{subject}.{detail}")
        if strong is not None:
            return Judgement(strong, f"enhanced:{enhanced}")
        if subject == "7":
            return Judgement(Reason.POLICY_REJECTION, f"enhanced:{enhanced}")
    words = _judge_words(text)
    if words is not None:
        return words
    if enhanced is not None and enhanced.split(".")[1] in _NOT_MAILBOX_SUBJECTS:
        return Judgement(Reason.POLICY_REJECTION, f"enhanced:{enhanced}")
    return _judge_basic_code(reply.code)


def _judge_words(text: str) -> Judgement | None:
    """Policy words win over mailbox words: an ambiguous text never fails an address."""
    if evidence.POLICY.search(text):
        return Judgement(Reason.POLICY_REJECTION, "text:policy")
    if evidence.MAILBOX_GONE.search(text):
        return Judgement(Reason.MAILBOX_UNKNOWN, "text:mailbox-unknown")
    if evidence.MAILBOX_FULL.search(text):
        return Judgement(Reason.MAILBOX_FULL, "text:mailbox-full")
    return None


def _judge_basic_code(code: int) -> Judgement:
    """RFC 5321 4.2.2: 550/551/553 name the mailbox, 552 its storage; any other 5yz
    (familiar or not, read by its first digit) refuses the transaction."""
    if code in (550, 551, 553):
        return Judgement(Reason.MAILBOX_UNKNOWN, f"code:{code}")
    if code == 552:
        return Judgement(Reason.MAILBOX_FULL, "code:552")
    return Judgement(Reason.POLICY_REJECTION, f"code:{code}")


def is_too_many_recipients(reply: Reply) -> bool:
    """RFC 5321 4.5.3.1.10: the transaction holds too many recipients; a new one may take
    this address. A per-hour limit on the client is not this."""
    if reply.is_positive:
        return False
    text = words_of(reply)
    if evidence.PER_CLIENT_PERIOD.search(text):
        return False
    limit = (enhanced_code(reply) or "").endswith(".5.3")
    if evidence.TOO_MANY_RECIPIENTS.search(text):
        return limit or reply.is_transient or reply.code == 552
    return limit and reply.code == 452


def refuses_sender(reply: Reply) -> bool:
    """A permanent RCPT reply that refuses our MAIL FROM (Postfix's smtpd_delay_reject
    reports sender restrictions at RCPT): worth the fallback sender."""
    if not reply.is_permanent:
        return False
    return judge_rcpt(reply).reason is Reason.SENDER_REJECTED


def judge_refusal_of_host(reply: Reply) -> Judgement:
    """A refusal before any address is named (banner, EHLO/HELO): of the client, or of
    the verifier in general. 4xx tries the next host."""
    if reply.is_transient:
        return judge_transient(reply)
    client = _client_refusal(words_of(reply))
    if client is not None and client.reason is not Reason.SENDER_REJECTED:
        return client
    return Judgement(Reason.VERIFIER_REJECTED, f"code:{reply.code}")


def judge_sender_refusal(reply: Reply) -> Judgement:
    """Every sender was refused at MAIL; the words may show it was the client instead."""
    client = _client_refusal(words_of(reply))
    if client is not None and client.reason is not Reason.SENDER_REJECTED:
        return client
    return Judgement(Reason.SENDER_REJECTED, f"code:{reply.code}")


def vrfy_is_decisive(reply: Reply) -> bool:
    """VRFY decides only on 250/251, or a 5xx that names the mailbox (X.1.x)."""
    if reply.code in (250, 251):
        return True
    return (
        reply.is_permanent
        and enhanced_code(reply) is not None
        and classify_rcpt(reply) is Reason.MAILBOX_UNKNOWN
    )


def classify_catch_all_probe(reply: Reply, mx_host: str = "") -> bool | None:
    """A random local part accepted means catch-all; rejected as unknown means not."""
    if reply.is_positive:
        return True
    if reply.is_permanent and classify_rcpt(reply, mx_host) is Reason.MAILBOX_UNKNOWN:
        return False
    return None

