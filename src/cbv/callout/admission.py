"""The runner's seam in front of each connection: may this session go to that host, and
what did the host make of the verifier.

The runner asks `HostAdmission.admit(target)` before it dials; a denial becomes the host's
failure (rate limited, or the host is cooling after refusing us) and the next host is
tried, without a connection. After a session, the runner reports whether the host
refused the verifier itself or answered about an address, which the limits turn into a
cooldown or its end.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import Protocol

from cbv.callout.dialogue import Dialogue, Outcome
from cbv.callout.plan import Target
from cbv.model import Reason, Stage

# Reasons that say the host refused the verifier itself (its address on a blocklist, its
# reputation, its rate, its name, its sender), not the address asked about.
REFUSES_THE_VERIFIER = frozenset({
    Reason.VERIFIER_REJECTED, Reason.SENDER_REJECTED, Reason.CLIENT_BLOCKED,
    Reason.CLIENT_THROTTLED,
})
ANSWERS_ABOUT_A_MAILBOX = frozenset({
    Reason.ACCEPTED, Reason.VRFY_ACCEPTED, Reason.MAILBOX_UNKNOWN, Reason.MAILBOX_FULL,
})
GREETING_STAGES = (Stage.BANNER, Stage.EHLO)
SERVICE_NOT_AVAILABLE = 421


@dataclass(frozen=True, slots=True)
class Denial:
    reason: Reason
    detail: str


class Admission(Protocol):
    @property
    def denial(self) -> Denial | None:
        """None: dial the host."""
        ...

    async def session_over(self, refusal: str | None, answered: bool) -> None:
        """`refusal`: what the host said when it refused the verifier; `answered`: it
        answered about a mailbox (a good session)."""
        ...


class HostAdmission(Protocol):
    def admit(self, target: Target, egress: str) -> AbstractAsyncContextManager[Admission]:
        """Held for the whole session to `target` through the egress named `egress` (a
        host that refused one of cbv's source addresses may take another)."""
        ...


class _Admitted:
    denial: Denial | None = None

    async def session_over(self, refusal: str | None, answered: bool) -> None:
        """Nothing is remembered."""


class AdmitEveryone:
    """No limits (the runner used on its own, in tests and tools)."""

    @asynccontextmanager
    async def admit(self, target: Target, egress: str) -> AsyncIterator[Admission]:
        yield _Admitted()


def _said(outcome: Outcome) -> str:
    reply = outcome.reply
    if reply is None:
        return outcome.detail or outcome.reason.value
    enhanced = f" {reply.enhanced}" if reply.enhanced else ""
    text = " ".join(reply.text.split())
    return f"{outcome.stage.value}: {reply.code}{enhanced} {text}".rstrip()


def refusal_of(dialogue: Dialogue) -> str | None:
    """What the host said if the session shows it refused the verifier itself: 421 at the
    greeting, EHLO or HELO; or a reply the classifier reads as refusing us (5xx at the
    greeting or to EHLO and HELO, every MAIL FROM refused, our address blocklisted or
    throttled, at any stage)."""
    failure = dialogue.host_failure
    if failure is not None and (
        failure.reason in REFUSES_THE_VERIFIER
        or (failure.stage in GREETING_STAGES and failure.reply is not None
            and failure.reply.code == SERVICE_NOT_AVAILABLE)):
        return _said(failure)
    for outcome in dialogue.outcomes.values():
        if outcome.reason in REFUSES_THE_VERIFIER:
            return _said(outcome)
    return None


def answered(dialogue: Dialogue) -> bool:
    """The host answered about at least one mailbox, the catch-all probe's included: it
    talks to the verifier."""
    probed = dialogue.settings.probe_local_part is not None and dialogue.catch_all is not None
    return probed or any(o.reason in ANSWERS_ABOUT_A_MAILBOX for o in dialogue.outcomes.values())
