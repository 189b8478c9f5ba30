"""Whether a host refused the verifier's own address as blocked or listed (an egress's
reputation), as opposed to anything about the mailbox or the sender."""

from __future__ import annotations

import re

from cbv.callout.dialogue import Outcome
from cbv.model import Reason

BLOCK_PHRASES = re.compile(
    r"block|black.?list|deny.?list|\blisted\b|spamhaus|spamcop|barracuda|backscatter|"
    r"\brbl\b|dnsbl|reputation|banned|poor.?reputation|client host \S* ?rejected",
    re.IGNORECASE,
)
_REFUSING = (Reason.VERIFIER_REJECTED, Reason.POLICY_REJECTION, Reason.TEMPFAIL)


def refuses_the_egress(outcome: Outcome | None) -> bool:
    """A 4xx or 5xx whose text says the connecting address is blocked or listed."""
    if outcome is None or outcome.reply is None or outcome.reason not in _REFUSING:
        return False
    return BLOCK_PHRASES.search(outcome.reply.text) is not None
