"""Which replies refuse the verifier's own address (an egress's reputation), and which not."""

from __future__ import annotations

import pytest

from cbv.callout.dialogue import Outcome
from cbv.callout.refusals import refuses_the_egress
from cbv.model import Reason, Stage
from cbv.protocol.smtp import Reply


def outcome(reason: Reason, code: int, text: str) -> Outcome:
    return Outcome(reason, Stage.BANNER, Reply(code, (text,)))


@pytest.mark.parametrize(("reason", "code", "text"), [
    (Reason.VERIFIER_REJECTED, 554, "5.7.1 Service unavailable; Client host [192.0.2.1] "
                                    "blocked using zen.spamhaus.org"),
    (Reason.POLICY_REJECTION, 550, "5.7.1 Your IP is listed on bl.spamcop.net"),
    (Reason.TEMPFAIL, 421, "4.7.0 Your IP has a poor reputation, try again later"),
    (Reason.CLIENT_BLOCKED, 550, "5.7.1 anything the classifier called a client block"),
    (Reason.VERIFIER_REJECTED, 550, "RBL: b.barracudacentral.org"),
])
def test_blocks_and_listings_refuse_the_egress(reason: Reason, code: int, text: str) -> None:
    assert refuses_the_egress(outcome(reason, code, text))


@pytest.mark.parametrize(("reason", "code", "text"), [
    (Reason.MAILBOX_UNKNOWN, 550, "5.1.1 User unknown; the mailbox is blocked"),
    (Reason.POLICY_REJECTION, 550, "5.7.1 Relaying denied"),
    (Reason.GREYLISTED, 450, "4.2.0 Greylisted, blocked for 5 minutes"),
    (Reason.SENDER_REJECTED, 550, "5.1.7 sender address listed as invalid"),
])
def test_anything_else_does_not(reason: Reason, code: int, text: str) -> None:
    assert not refuses_the_egress(outcome(reason, code, text))


def test_no_reply_is_no_refusal() -> None:
    assert not refuses_the_egress(None)
    assert not refuses_the_egress(Outcome(Reason.TIMEOUT, Stage.CONNECT, detail="timed out"))
