"""The policy matrix: every result under every action, dry run, tags, points and headers."""

from __future__ import annotations

from typing import Any

import pytest

from cbv.config import PolicyConfig
from cbv.model import Reason, Result, SmtpReply, Verdict, utcnow
from cbv.policy import HEADER, Action, Check, RequestContext, RequestKind, SitePolicy

REASONS_BY_RESULT = {result: [r for r in Reason if r.result is result] for result in Result}


def verdict(reason: Reason, address: str = "alice@sender.test", **fields: Any) -> Verdict:
    reply = None
    if reason is Reason.MAILBOX_UNKNOWN:
        reply = SmtpReply(code=550, enhanced="5.1.1", text="<alice@sender.test>: User unknown")
    return Verdict(address=address, result=reason.result, reason=reason, checked_at=utcnow(),
                   mx="mx1.sender.test" if reply else None, reply=reply, **fields)


def check(**policy: Any) -> tuple[SitePolicy, Check]:
    site = SitePolicy(PolicyConfig(**policy))
    planned = site.plan(RequestContext(RequestKind.RCPT, "alice@sender.test", "bob@example.test",
                                       "192.0.2.7"))
    assert isinstance(planned, Check)
    return site, planned


EXPECTED_ACTION = {
    # (result, on_fail, on_transient) -> action
    **{(Result.PASS, f, t): Action.ACCEPT for f in ("reject", "quarantine", "accept")
       for t in ("defer", "accept")},
    **{(Result.UNKNOWN, f, t): Action.ACCEPT for f in ("reject", "quarantine", "accept")
       for t in ("defer", "accept")},
    **{(Result.FAIL, "reject", t): Action.REJECT for t in ("defer", "accept")},
    **{(Result.FAIL, "quarantine", t): Action.QUARANTINE for t in ("defer", "accept")},
    **{(Result.FAIL, "accept", t): Action.ACCEPT for t in ("defer", "accept")},
    **{(Result.TRANSIENT, f, "defer"): Action.DEFER for f in ("reject", "quarantine", "accept")},
    **{(Result.TRANSIENT, f, "accept"): Action.ACCEPT for f in ("reject", "quarantine", "accept")},
}


@pytest.mark.parametrize("dry_run", [False, True])
@pytest.mark.parametrize("on_transient", ["defer", "accept"])
@pytest.mark.parametrize("on_fail", ["reject", "quarantine", "accept"])
@pytest.mark.parametrize("reason", list(Reason))
def test_every_reason_under_every_action(
    reason: Reason, on_fail: str, on_transient: str, dry_run: bool
) -> None:
    site, planned = check(on_fail=on_fail, on_transient=on_transient, dry_run=dry_run)
    decision = site.decide(planned, verdict(reason))
    assert decision.action is EXPECTED_ACTION[(reason.result, on_fail, on_transient)]
    assert decision.dry_run is dry_run
    assert decision.result == reason.result.value
    assert decision.reason == reason.value
    if decision.action in (Action.REJECT, Action.DEFER):
        assert decision.code is not None
        assert str(decision.code)[0] == ("5" if decision.action is Action.REJECT else "4")
    else:
        assert decision.code is None


def test_default_replies_follow_postfix() -> None:
    site, planned = check()
    rejected = site.decide(planned, verdict(Reason.MAILBOX_UNKNOWN))
    assert rejected.reply == (
        "550 5.1.7 undeliverable address (mailbox_unknown; mx1.sender.test said: "
        "550 5.1.1 <alice@sender.test>: User unknown)"
    )
    deferred = site.decide(planned, verdict(Reason.GREYLISTED, detail="450 greylisted"))
    assert deferred.reply == "450 4.1.7 unverified address (greylisted; 450 greylisted)"
    assert site.decide(planned, verdict(Reason.NO_MAIL_DOMAIN)).reply == (
        "550 5.1.7 undeliverable address (no_mail_domain)"
    )


def test_recipient_verification_speaks_of_recipients() -> None:
    site, planned = check(verify="recipient")
    assert planned.address == "bob@example.test"
    rejected = site.decide(planned, verdict(Reason.MAILBOX_UNKNOWN, "bob@example.test"))
    assert (rejected.code, rejected.enhanced) == (550, "5.1.1")
    assert site.decide_pending(planned).enhanced == "4.1.1"


def test_reply_texts_and_codes_are_configurable() -> None:
    site, planned = check(replies={
        "reject": "554 5.7.1 {address} is not a mailbox ({reason})",
        "defer": "451 4.4.3 try again ({reason})",
        "quarantine": "held: {address}",
    })
    rejected = site.decide(planned, verdict(Reason.MAILBOX_UNKNOWN))
    assert rejected.reply == "554 5.7.1 alice@sender.test is not a mailbox (mailbox_unknown)"
    assert site.decide(planned, verdict(Reason.TIMEOUT)).reply == "451 4.4.3 try again (timeout)"
    site, planned = check(on_fail="quarantine", replies={"quarantine": "held: {address}"})
    held = site.decide(planned, verdict(Reason.MAILBOX_UNKNOWN))
    assert (held.action, held.text, held.code) == (Action.QUARANTINE, "held: alice@sender.test",
                                                   None)


def test_accepting_a_failure_tags_scores_and_adds_the_header() -> None:
    site, planned = check(on_fail="accept", tag_subject=True, add_header=True, score=2.5)
    decision = site.decide(planned, verdict(Reason.MAILBOX_UNKNOWN))
    assert decision.action is Action.ACCEPT
    assert decision.subject_tag == "*** CBV ***"
    assert decision.score == 2.5
    assert decision.headers == ((HEADER, "fail reason=mailbox_unknown "
                                 "address=alice@sender.test mx=mx1.sender.test score=2.5"),)


def test_tag_and_points_only_for_failures_header_for_every_accept() -> None:
    site, planned = check(on_fail="accept", on_transient="accept", tag_subject=True,
                          add_header=True, subject_tag="[forged?]")
    for reason in (Reason.ACCEPTED, Reason.GREYLISTED, Reason.POLICY_REJECTION):
        decision = site.decide(planned, verdict(reason))
        assert decision.subject_tag is None
        assert decision.score == 0
        assert decision.headers[0][1].startswith(f"{reason.result.value} reason={reason.value}")
    assert site.decide(planned, verdict(Reason.NO_MAIL_DOMAIN)).subject_tag == "[forged?]"


def test_no_tag_unless_enabled_and_no_header_unless_asked() -> None:
    site, planned = check(on_fail="accept")
    decision = site.decide(planned, verdict(Reason.MAILBOX_UNKNOWN))
    assert decision.subject_tag is None
    assert decision.headers == ()
    assert decision.score == 1.0  # SecurityGateway's default points


def test_rejections_carry_no_headers() -> None:
    site, planned = check(add_header=True)
    assert site.decide(planned, verdict(Reason.MAILBOX_UNKNOWN)).headers == ()


def test_pending_defers_or_accepts_by_on_transient() -> None:
    site, planned = check()
    pending = site.decide_pending(planned)
    assert pending.action is Action.DEFER
    assert pending.reply == "450 4.1.7 unverified address: address verification in progress"
    assert pending.result == "pending"
    site, planned = check(on_transient="accept")
    assert site.decide_pending(planned).action is Action.ACCEPT


def test_internal_errors_fail_open_or_defer_but_never_reject() -> None:
    site, planned = check()
    opened = site.decide_error(planned, fail_open=True, detail="boom")
    assert (opened.action, opened.result) == (Action.ACCEPT, "error")
    closed = site.decide_error(planned, fail_open=False, detail="boom")
    assert closed.action is Action.DEFER
    assert closed.reply == "451 4.3.0 address verification failed: internal error"


def test_cached_and_mx_reach_the_log_fields() -> None:
    site, planned = check(dry_run=True)
    fields = site.decide(planned, verdict(Reason.MAILBOX_UNKNOWN, cached=True)).log_fields()
    assert fields == {
        "address": "alice@sender.test", "result": "fail", "reason": "mailbox_unknown",
        "action": "reject", "cached": True, "dry_run": True, "mx": "mx1.sender.test",
    }


def test_a_cached_verdict_decides_as_it_did_the_first_time() -> None:
    site, planned = check()
    cached = verdict(Reason.MAILBOX_UNKNOWN, cached=True)
    first = site.decide(planned, cached)
    assert site.decide(planned, cached) is first
    assert first.action is Action.REJECT
    _, accepting = check(on_fail="accept")  # other rules, the same verdict
    assert site.decide(accepting, cached).action is Action.ACCEPT
