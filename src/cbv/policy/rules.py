"""The effective policy for one recipient domain: [policy] with that domain's table on top."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, TypeVar

from cbv.config import DomainPolicy, PolicyConfig, ReplyTexts, parse_reply_template
from cbv.policy.addresses import normalised

# Postfix's own wording (reject_unverified_sender / _recipient); Postfix adds the
# "<address>: Sender address rejected: " prefix itself.
DEFAULT_REPLIES: dict[str, dict[str, str]] = {
    "sender": {
        "reject": "550 5.1.7 undeliverable address ({why})",
        "defer": "450 4.1.7 unverified address ({why})",
        "in_progress": "450 4.1.7 unverified address: address verification in progress",
    },
    "recipient": {
        "reject": "550 5.1.1 undeliverable address ({why})",
        "defer": "450 4.1.1 unverified address ({why})",
        "in_progress": "450 4.1.1 unverified address: address verification in progress",
    },
}
DEFAULT_QUARANTINE = "cbv: undeliverable address ({why})"
DEFAULT_ERROR = "451 4.3.0 address verification failed: internal error"

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class ReplyTemplate:
    code: int
    enhanced: str | None
    text: str  # may hold {address}, {reason}, {why}

    @classmethod
    def parse(cls, template: str) -> ReplyTemplate:
        return cls(*parse_reply_template(template))


@dataclass(frozen=True, slots=True)
class Replies:
    reject: ReplyTemplate
    defer: ReplyTemplate
    in_progress: ReplyTemplate
    quarantine: str
    error: ReplyTemplate


@dataclass(frozen=True, slots=True)
class Rules:
    enabled: bool
    verify: Literal["sender", "recipient"]
    on_fail: Literal["reject", "quarantine", "accept"]
    on_transient: Literal["defer", "accept"]
    dry_run: bool
    tag_subject: bool
    subject_tag: str
    score: float
    add_header: bool
    exclude_authenticated: bool
    exclude_local: bool
    allowlist: tuple[str, ...]
    replies: Replies


def _replies(verify: str, chosen: ReplyTexts, fallback: ReplyTexts) -> Replies:
    defaults = DEFAULT_REPLIES[verify]

    def pick(name: str, default: str) -> str:
        value: str | None = getattr(chosen, name) or getattr(fallback, name)
        return value or default

    return Replies(
        reject=ReplyTemplate.parse(pick("reject", defaults["reject"])),
        defer=ReplyTemplate.parse(pick("defer", defaults["defer"])),
        in_progress=ReplyTemplate.parse(pick("in_progress", defaults["in_progress"])),
        quarantine=pick("quarantine", DEFAULT_QUARANTINE),
        error=ReplyTemplate.parse(pick("error", DEFAULT_ERROR)),
    )


def _pick(override: T | None, default: T) -> T:
    return default if override is None else override


def merge_rules(policy: PolicyConfig, domain: DomainPolicy | None = None) -> Rules:
    """Every key the domain table sets replaces the global one, lists included."""
    table = domain or DomainPolicy()
    verify = _pick(table.verify, policy.verify)
    return Rules(
        enabled=_pick(table.enabled, policy.enabled),
        verify=verify,
        on_fail=_pick(table.on_fail, policy.on_fail),
        on_transient=_pick(table.on_transient, policy.on_transient),
        dry_run=_pick(table.dry_run, policy.dry_run),
        tag_subject=_pick(table.tag_subject, policy.tag_subject),
        subject_tag=_pick(table.subject_tag, policy.subject_tag),
        score=_pick(table.score, policy.score),
        add_header=_pick(table.add_header, policy.add_header),
        exclude_authenticated=_pick(table.exclude_authenticated, policy.exclude_authenticated),
        exclude_local=_pick(table.exclude_local, policy.exclude_local),
        allowlist=tuple(_pick(table.allowlist, policy.allowlist)),
        replies=_replies(verify, table.replies or ReplyTexts(), policy.replies),
    )


class RuleBook:
    """Rules per recipient domain: the exact domain first, then "*.parent" tables."""

    def __init__(self, policy: PolicyConfig) -> None:
        self.default = merge_rules(policy)
        self._by_domain = {key: merge_rules(policy, table) for key, table in policy.domains.items()}

    def for_recipient(self, recipient: str) -> Rules:
        if not recipient or not self._by_domain:
            return self.default
        return self._for_domain(normalised(recipient)[1])

    def _for_domain(self, domain: str) -> Rules:
        found = self._by_domain.get(domain)
        if found is not None:
            return found
        labels = domain.split(".")
        for start in range(1, len(labels)):
            found = self._by_domain.get("*." + ".".join(labels[start:]))
            if found is not None:
                return found
        return self.default
