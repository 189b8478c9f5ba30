"""Whether a host refused the verifier's own address as blocked or listed (an egress's
reputation), as opposed to anything about the mailbox or the sender: the classifier's
`client_blocked`, or a refusal of the session whose text says the same."""

from __future__ import annotations

from cbv.callout import evidence
from cbv.callout.dialogue import Outcome
from cbv.model import Reason

_SESSION_REFUSALS = (Reason.VERIFIER_REJECTED, Reason.POLICY_REJECTION, Reason.TEMPFAIL)


def refuses_the_egress(outcome: Outcome | None) -> bool:
    if outcome is None:
        return False
    if outcome.reason is Reason.CLIENT_BLOCKED:
        return True
    if outcome.reply is None or outcome.reason not in _SESSION_REFUSALS:
        return False
    return evidence.CLIENT_BLOCKED.search(outcome.reply.text) is not None
