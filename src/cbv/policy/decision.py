"""From a verdict to what the mail server should do, as SecurityGateway and Postfix admins
expect it: refuse, defer, quarantine, or accept with a tag, points and a header."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from cbv.model import Result, Verdict
from cbv.policy.rules import ReplyTemplate, Rules

HEADER = "X-CBV-Result"
PENDING = "pending"  # the callout outlived answer_within and goes on in the background
EXCLUDED = "excluded"
ERROR = "error"


class Action(StrEnum):
    ACCEPT = "accept"
    REJECT = "reject"
    DEFER = "defer"
    QUARANTINE = "quarantine"


@dataclass(slots=True)
class Decision:
    """`action` is what the policy wants; with `dry_run` the front end only logs it."""

    action: Action
    address: str
    result: str  # a verdict Result, or pending, excluded, error
    reason: str
    dry_run: bool = False
    code: int | None = None
    enhanced: str | None = None
    text: str = ""  # the SMTP reply text, or the quarantine reason
    headers: tuple[tuple[str, str], ...] = ()
    subject_tag: str | None = None
    score: float = 0.0
    cached: bool = False
    mx: str | None = None

    @property
    def reply(self) -> str:
        """`550 5.1.7 text`, or just the text for a quarantine."""
        return " ".join(str(p) for p in (self.code, self.enhanced, self.text) if p)

    def log_fields(self) -> dict[str, object]:
        fields: dict[str, object] = {
            "address": self.address,
            "result": self.result,
            "reason": self.reason,
            "action": self.action.value,
            "cached": self.cached,
        }
        if self.dry_run:
            fields["dry_run"] = True
        if self.mx:
            fields["mx"] = self.mx
        if self.score:
            fields["score"] = self.score
        if self.subject_tag:
            fields["subject_tag"] = self.subject_tag
        return fields


def explain(verdict: Verdict) -> str:
    """The {why} of a reply: the reason, then who said what."""
    reply = verdict.reply
    if reply is not None:
        said = " ".join(str(p) for p in (reply.code, reply.enhanced, reply.text) if p)
        who = verdict.mx or "the mail server"
        return f"{verdict.reason.value}; {who} said: {said.splitlines()[0] if said else ''}"
    if verdict.detail:
        return f"{verdict.reason.value}; {verdict.detail}"
    return verdict.reason.value


def _filled(template: ReplyTemplate, address: str, reason: str, why: str
            ) -> tuple[int, str | None, str]:
    text = template.text.format(address=address, reason=reason, why=why)
    return template.code, template.enhanced, text


def decide(verdict: Verdict, rules: Rules) -> Decision:
    address, reason = verdict.address, verdict.reason.value

    def make(action: Action, reply: tuple[int, str | None, str] = (0, None, ""),
             tag: str | None = None, score: float = 0.0) -> Decision:
        code, enhanced, text = reply
        headers: tuple[tuple[str, str], ...] = ()
        if action is Action.ACCEPT and rules.add_header:
            headers = ((HEADER, header_value(verdict, score)),)
        return Decision(action, address, verdict.result.value, reason, rules.dry_run,
                        code or None, enhanced, text, headers, tag, score, verdict.cached,
                        verdict.mx)

    if verdict.result is Result.FAIL:
        if rules.on_fail == "reject":
            return make(Action.REJECT, _filled(rules.replies.reject, address, reason,
                                               explain(verdict)))
        if rules.on_fail == "quarantine":
            text = rules.replies.quarantine.format(address=address, reason=reason,
                                                   why=explain(verdict))
            return make(Action.QUARANTINE, (0, None, text))
        return make(Action.ACCEPT, tag=rules.subject_tag if rules.tag_subject else None,
                    score=rules.score)
    if verdict.result is Result.TRANSIENT and rules.on_transient == "defer":
        return make(Action.DEFER, _filled(rules.replies.defer, address, reason,
                                          explain(verdict)))
    return make(Action.ACCEPT)


def decide_pending(address: str, rules: Rules) -> Decision:
    """No verdict within answer_within: a transient answer, by on_transient."""
    if rules.on_transient == "accept":
        return Decision(Action.ACCEPT, address, PENDING, "in_progress", rules.dry_run)
    code, enhanced, text = _filled(rules.replies.in_progress, address, "in_progress",
                                   "address verification in progress")
    return Decision(Action.DEFER, address, PENDING, "in_progress", rules.dry_run, code,
                    enhanced, text)


def decide_error(address: str, rules: Rules, fail_open: bool, detail: str) -> Decision:
    """cbv itself failed: accept (fail open) or defer, never reject."""
    if fail_open:
        return Decision(Action.ACCEPT, address, ERROR, detail, rules.dry_run)
    code, enhanced, text = _filled(rules.replies.error, address, ERROR, detail)
    return Decision(Action.DEFER, address, ERROR, detail, rules.dry_run, code, enhanced, text)


def not_checked(address: str, why: str) -> Decision:
    return Decision(Action.ACCEPT, address, EXCLUDED, why)


def header_value(verdict: Verdict, score: float) -> str:
    parts = [verdict.result.value, f"reason={verdict.reason.value}", f"address={verdict.address}"]
    if verdict.mx:
        parts.append(f"mx={verdict.mx}")
    if score:
        parts.append(f"score={score:g}")
    return " ".join(parts)
