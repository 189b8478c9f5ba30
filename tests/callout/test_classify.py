"""The classification table of docs/reasons.md, row by row."""

from __future__ import annotations

import pytest

from cbv.callout.classify import classify_catch_all_probe, classify_rcpt, vrfy_is_decisive
from cbv.model import Reason
from cbv.protocol.smtp import Reply


def reply(code: int, text: str) -> Reply:
    return Reply(code, (text,))


@pytest.mark.parametrize(
    ("code", "text", "reason"),
    [
        (250, "2.1.5 Ok", Reason.ACCEPTED),
        (251, "User not local; will forward", Reason.ACCEPTED),
        (450, "4.2.0 Greylisted, see http://postgrey", Reason.GREYLISTED),
        (451, "4.7.1 Please try again later", Reason.GREYLISTED),
        (451, "4.3.0 Temporary lookup failure", Reason.TEMPFAIL),
        (421, "4.4.2 closing connection", Reason.TEMPFAIL),
        (550, "5.1.1 User unknown", Reason.MAILBOX_UNKNOWN),
        (550, "5.1.1 blocked words do not matter with an enhanced code", Reason.MAILBOX_UNKNOWN),
        (553, "5.1.3 bad address syntax", Reason.MAILBOX_UNKNOWN),
        (550, "5.2.1 mailbox disabled", Reason.MAILBOX_UNKNOWN),
        (552, "5.2.2 mailbox full", Reason.MAILBOX_FULL),
        (550, "5.7.1 Relay access denied", Reason.POLICY_REJECTION),
        (550, "5.7.1 user unknown words do not matter with 5.7", Reason.POLICY_REJECTION),
        (554, "5.3.0 system problem", Reason.POLICY_REJECTION),
        (550, "5.5.1 protocol error", Reason.POLICY_REJECTION),
        (550, "5.1.8 sender domain rejected", Reason.SENDER_REJECTED),
        (553, "5.1.7 bad sender address syntax", Reason.SENDER_REJECTED),
        (550, "5.0.0 No such user", Reason.MAILBOX_UNKNOWN),
        (550, "5.0.0 Blocked by policy", Reason.POLICY_REJECTION),
        (550, "No such user here", Reason.MAILBOX_UNKNOWN),
        (550, "Mailbox unavailable - blocked by Spamhaus", Reason.POLICY_REJECTION),
        (554, "Client host rejected: listed on a DNSBL", Reason.POLICY_REJECTION),
        (550, "Requested action not taken", Reason.MAILBOX_UNKNOWN),
        (552, "Requested mail action aborted: exceeded storage", Reason.MAILBOX_FULL),
        (550, "mailbox is full", Reason.MAILBOX_FULL),
        (554, "Transaction failed", Reason.POLICY_REJECTION),
        (501, "Syntax error in parameters", Reason.POLICY_REJECTION),
    ],
)
def test_rcpt_reply_classification(code: int, text: str, reason: Reason) -> None:
    assert classify_rcpt(reply(code, text)) is reason


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
