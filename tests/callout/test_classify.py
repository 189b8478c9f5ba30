"""The classification table of docs/reasons.md, row by row."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cbv.callout import evidence
from cbv.callout.classify import (
    MAX_WORDS,
    Judgement,
    classify_catch_all_probe,
    is_too_many_recipients,
    judge_rcpt,
    refuses_sender,
    vrfy_is_decisive,
    words_of,
)
from cbv.model import Reason
from cbv.protocol.smtp import Reply


def reply(code: int, text: str) -> Reply:
    return Reply(code, (text,))


@pytest.mark.parametrize(
    ("code", "text", "reason", "rule"),
    [
        (250, "2.1.5 Ok", Reason.ACCEPTED, "code:250"),
        (251, "User not local; will forward", Reason.ACCEPTED, "code:251"),
        (450, "4.2.0 Greylisted, see http://postgrey", Reason.GREYLISTED, "text:greylist"),
        (451, "4.7.1 Please try again later", Reason.GREYLISTED, "text:retry-later"),
        (451, "4.3.0 Temporary lookup failure", Reason.TEMPFAIL, "code:4xx"),
        (421, "4.4.2 closing connection", Reason.TEMPFAIL, "code:4xx"),
        (421, "4.7.0 Too many concurrent SMTP connections from this IP address",
         Reason.CLIENT_THROTTLED, "text:client-rate"),
        (450, "4.7.1 Client host rejected: cannot find your hostname, [192.0.2.1]",
         Reason.CLIENT_THROTTLED, "text:client-blocked"),
        (450, "4.1.8 <a@b.test>: Sender address rejected: Domain not found",
         Reason.TEMPFAIL, "text:sender-refused"),
        (550, "5.1.1 User unknown", Reason.MAILBOX_UNKNOWN, "enhanced:5.1.1"),
        (550, "5.1.1 blocked words alone do not outweigh 5.1.1", Reason.MAILBOX_UNKNOWN,
         "enhanced:5.1.1"),
        (553, "5.1.3 bad address syntax", Reason.MAILBOX_UNKNOWN, "enhanced:5.1.3"),
        (550, "5.2.1 mailbox disabled", Reason.MAILBOX_UNKNOWN, "enhanced:5.2.1"),
        (552, "5.2.2 mailbox full", Reason.MAILBOX_FULL, "enhanced:5.2.2"),
        (556, "5.1.10 <a@b.test>: Recipient address rejected: Domain b.test does not accept "
         "mail (nullMX)", Reason.MAILBOX_UNKNOWN, "enhanced:5.1.10"),
        (550, "5.7.1 Relay access denied", Reason.POLICY_REJECTION, "enhanced:5.7.1"),
        (550, "5.7.1 user unknown words do not matter with 5.7", Reason.POLICY_REJECTION,
         "enhanced:5.7.1"),
        (554, "5.3.0 system problem", Reason.POLICY_REJECTION, "enhanced:5.3.0"),
        (550, "5.5.1 protocol error", Reason.POLICY_REJECTION, "enhanced:5.5.1"),
        (550, "5.1.8 sender domain rejected", Reason.SENDER_REJECTED, "text:sender-refused"),
        (553, "5.1.7 bad sender address syntax", Reason.SENDER_REJECTED, "text:sender-refused"),
        (550, "5.1.7 <>: refused", Reason.SENDER_REJECTED, "enhanced:5.1.7"),
        (550, "5.0.0 No such user", Reason.MAILBOX_UNKNOWN, "text:mailbox-unknown"),
        (550, "5.0.0 Blocked by policy", Reason.POLICY_REJECTION, "text:policy"),
        (550, "5.0.0 Requested action not taken", Reason.MAILBOX_UNKNOWN, "code:550"),
        (554, "5.3.0 <a@b.test>: Recipient address rejected: user does not exist",
         Reason.MAILBOX_UNKNOWN, "text:mailbox-unknown"),
        (550, "No such user here", Reason.MAILBOX_UNKNOWN, "text:mailbox-unknown"),
        (550, "Mailbox unavailable - blocked by Spamhaus", Reason.CLIENT_BLOCKED,
         "text:client-blocked"),
        (554, "Client host rejected: listed on a DNSBL", Reason.CLIENT_BLOCKED,
         "text:client-blocked"),
        (550, "Requested action not taken", Reason.MAILBOX_UNKNOWN, "code:550"),
        (552, "Requested mail action aborted: exceeded storage", Reason.MAILBOX_FULL,
         "text:mailbox-full"),
        (550, "mailbox is full", Reason.MAILBOX_FULL, "text:mailbox-full"),
        (554, "Transaction failed", Reason.POLICY_REJECTION, "code:554"),
        (501, "Syntax error in parameters", Reason.POLICY_REJECTION, "code:501"),
        (571, "No PTR Record found", Reason.CLIENT_BLOCKED, "text:client-blocked"),
        (577, "Not what you expected", Reason.POLICY_REJECTION, "code:577"),
        # The sample of issue 11: text about the client outweighs a mailbox code.
        (550, "127.0.0.1 is listed at bl.example (127.0.0.2: spam source)",
         Reason.CLIENT_BLOCKED, "text:client-blocked"),
        (550, "5.1.1 <x@y.test> - 203.0.113.222 has sent to too many recipients this hour. "
         "IB607", Reason.CLIENT_THROTTLED, "text:client-rate"),
        (550, "5.2.1 The user you are trying to contact is receiving mail at a rate that "
         "prevents additional messages from being delivered.", Reason.TEMPFAIL,
         "signature:gmail-recipient-rate"),
        (550, "5.4.1 [x@y.test]: Recipient address rejected: Access denied "
         "[AM1PEPF000.eurprd.protection.outlook.com]", Reason.MAILBOX_UNKNOWN,
         "signature:microsoft-dbeb"),
        (554, "5.7.1 <x@y.test>: Recipient address rejected: Access denied",
         Reason.POLICY_REJECTION, "enhanced:5.7.1"),
        (553, "5.7.1 <>: Sender address rejected: not accepted here", Reason.SENDER_REJECTED,
         "text:sender-refused"),
        (553, "sorry, that domain isn't in my list of allowed rcpthosts (#5.7.1)",
         Reason.POLICY_REJECTION, "enhanced:5.7.1"),
        (550, "sorry, no mailbox here by that name. (#5.1.1)", Reason.MAILBOX_UNKNOWN,
         "enhanced:5.1.1"),
    ],
)
def test_rcpt_reply_classification(code: int, text: str, reason: Reason, rule: str) -> None:
    assert judge_rcpt(reply(code, text)) == Judgement(reason, rule)


def test_only_the_first_words_of_a_long_reply_are_read() -> None:
    """A hostile server's 64 KiB reply costs the expressions no more than MAX_WORDS."""
    filler = "x" * MAX_WORDS
    late = Reply(550, (filler, "your IP is blocked by Spamhaus"))
    assert judge_rcpt(late) == Judgement(Reason.MAILBOX_UNKNOWN, "code:550")
    early = Reply(550, ("your IP is blocked by Spamhaus", filler))
    assert judge_rcpt(early).reason is Reason.CLIENT_BLOCKED
    assert len(words_of(late)) == MAX_WORDS


def test_the_mx_host_name_completes_a_provider_signature() -> None:
    dbeb = reply(550, "5.7.1 Recipient address rejected: Access denied")
    assert judge_rcpt(dbeb).reason is Reason.POLICY_REJECTION
    on_microsoft = judge_rcpt(dbeb, "example-com.mail.protection.outlook.com")
    assert on_microsoft == Judgement(Reason.MAILBOX_UNKNOWN, "signature:microsoft-dbeb")


@pytest.mark.parametrize(
    ("code", "text", "too_many"),
    [(452, "4.5.3 Error: too many recipients", True),
     (452, "Too many recipients", True),
     (452, "4.5.3 Domain policy size per transaction exceeded, please try this recipient in a "
      "separate transaction.", True),
     (552, "5.5.3 Too many recipients", True),
     (452, "4.3.1 Insufficient system storage", False),
     (550, "5.1.1 x has sent to too many recipients this hour", False),
     (250, "2.1.5 Ok", False)],
)
def test_too_many_recipients(code: int, text: str, too_many: bool) -> None:
    assert is_too_many_recipients(reply(code, text)) is too_many


@pytest.mark.parametrize(
    ("code", "text", "refused"),
    [(553, "5.7.1 <>: Sender address rejected: Access denied", True),
     (550, "5.1.8 <>: bad sender domain", True),
     (550, "Verification failed for <>\nSender verify failed", True),
     (450, "4.1.8 <a@b.test>: Sender address rejected: Domain not found", False),
     (550, "5.1.1 User unknown", False)],
)
def test_sender_refused_at_rcpt(code: int, text: str, refused: bool) -> None:
    assert refuses_sender(Reply(code, tuple(text.split("\n")))) is refused


def test_catch_all_probe() -> None:
    assert classify_catch_all_probe(reply(250, "2.1.5 Ok")) is True
    assert classify_catch_all_probe(reply(550, "5.1.1 unknown")) is False
    assert classify_catch_all_probe(reply(550, "5.7.1 blocked")) is None
    assert classify_catch_all_probe(reply(450, "4.2.0 greylisted")) is None


@pytest.mark.parametrize(
    ("code", "text", "decisive"),
    [(250, "<a@b>", True), (251, "forward", True), (252, "cannot verify", False),
     (550, "5.1.1 unknown", True), (502, "5.5.1 VRFY disabled", False),
     (550, "administrative prohibition", False), (450, "4.7.1 later", False)],
)
def test_vrfy_decisiveness(code: int, text: str, decisive: bool) -> None:
    assert vrfy_is_decisive(reply(code, text)) is decisive


OUTWEIGHING = {
    "recipient-busy": evidence.RECIPIENT_BUSY,
    "sender-refused": evidence.SENDER_REFUSED,
    "client-rate": evidence.CLIENT_RATE,
    "client-blocked": evidence.CLIENT_BLOCKED,
}


@pytest.mark.parametrize("expression", OUTWEIGHING.values(), ids=OUTWEIGHING.keys())
@settings(max_examples=400)
@given(data=st.data())
def test_no_wording_that_outweighs_the_code_is_skipped(
    expression: re.Pattern[str], data: st.DataObject
) -> None:
    """The cheap look-out before the four expressions lets every wording of theirs through."""
    text = data.draw(st.from_regex(expression))
    assert evidence.may_outweigh(text), text


def test_a_reply_about_a_mailbox_skips_the_client_expressions() -> None:
    text = words_of(reply(550, "5.1.1 <bob@example.test>: Recipient address rejected: User "
                                  "unknown in local recipient table"))
    assert not evidence.may_outweigh(text)
