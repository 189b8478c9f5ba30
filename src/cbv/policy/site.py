"""The site policy: which address a request asks cbv to verify, and what to answer."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from cbv.config import PolicyConfig
from cbv.model import Verdict
from cbv.policy.context import RequestContext, RequestKind
from cbv.policy.decision import Decision, decide, decide_error, decide_pending, not_checked
from cbv.policy.exclusions import Exclusions
from cbv.policy.rules import RuleBook, Rules

DECISIONS_REMEMBERED = 4096  # (cached verdict, rules) pairs; forgotten all at once past it


@dataclass(slots=True)
class Check:
    """Verify `address`, then decide under `rules`."""

    address: str
    rules: Rules
    recipient: str = ""  # the message's recipient, when the request names one


@dataclass(slots=True)
class Skip:
    """Nothing to verify. `decision` is set when it is a decision worth logging (an
    exclusion), None when the request is simply not one cbv acts on (CONNECT, DATA...)."""

    why: str
    decision: Decision | None


class SitePolicy:
    """Pure: no I/O, so every combination can be tested without a network."""

    def __init__(self, config: PolicyConfig, own_senders: Iterable[str] = ()) -> None:
        self.phase = config.phase
        self.rules = RuleBook(config)
        self._exclusions = Exclusions(own_senders, config.local_domains, config.local_networks)
        self._decided: dict[tuple[int, int], tuple[Verdict, Rules, Decision]] = {}

    def plan(self, context: RequestContext) -> Check | Skip:
        kind = context.kind
        if kind is RequestKind.OTHER:
            return Skip("nothing to verify at this stage", None)
        rules = self.rules.for_recipient(context.recipient)
        verify_recipient = rules.verify == "recipient" and kind is not RequestKind.LOOKUP
        if verify_recipient:
            if kind is not RequestKind.RCPT:
                return Skip("recipients are verified at RCPT", None)
            address = context.recipient
        else:
            if kind is RequestKind.MAIL and self.phase == "rcptto":
                return Skip("phase is rcptto: the sender is verified at RCPT", None)
            address = context.sender
        if not rules.enabled:
            return Skip("disabled", not_checked(address, "disabled"))
        excluded = self._exclusions.reason(context, rules, null_sender_counts=not verify_recipient)
        if excluded is not None:
            return Skip(excluded, not_checked(address, excluded))
        return Check(address, rules, context.recipient)

    def decide(self, check: Check, verdict: Verdict) -> Decision:
        """A cached verdict is the same object for every request that finds it, and the
        decision a pure function of it and the rules: made once, then remembered."""
        rules = check.rules
        key = (id(verdict), id(rules))
        known = self._decided.get(key)
        if known is not None and known[0] is verdict and known[1] is rules:
            return known[2]
        decision = decide(verdict, rules)
        if verdict.cached:
            if len(self._decided) >= DECISIONS_REMEMBERED:
                self._decided.clear()
            self._decided[key] = (verdict, rules, decision)
        return decision

    def decide_pending(self, check: Check) -> Decision:
        return decide_pending(check.address, check.rules)

    def decide_error(self, check: Check, fail_open: bool, detail: str) -> Decision:
        return decide_error(check.address, check.rules, fail_open, detail)
