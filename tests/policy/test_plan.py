"""What gets verified: phases, exclusions and per recipient domain overrides."""

from __future__ import annotations

from typing import Any

import pytest

from cbv.config import ConfigError, PolicyConfig, config_from_dict
from cbv.model import Reason, Result, Verdict, utcnow
from cbv.policy import Action, Check, RequestContext, RequestKind, SitePolicy, Skip

OWN = ("", "postmaster@verifier.cbv.test")


def policy(**settings: Any) -> SitePolicy:
    return SitePolicy(PolicyConfig(**settings), OWN)


def rcpt(sender: str = "alice@sender.test", recipient: str = "bob@example.test",
         client: str = "192.0.2.7", sasl: str = "") -> RequestContext:
    return RequestContext(RequestKind.RCPT, sender, recipient, client, sasl)


def excluded_why(site: SitePolicy, context: RequestContext) -> str | None:
    planned = site.plan(context)
    if isinstance(planned, Check):
        return None
    assert planned.decision is not None, "an exclusion is a decision worth a log line"
    assert planned.decision.action is Action.ACCEPT
    assert planned.decision.result == "excluded"
    return planned.why


def test_a_plain_request_verifies_the_sender() -> None:
    planned = policy().plan(rcpt())
    assert isinstance(planned, Check)
    assert planned.address == "alice@sender.test"


@pytest.mark.parametrize(("kind", "phase", "verified"), [
    (RequestKind.MAIL, "mailfrom", True),
    (RequestKind.RCPT, "mailfrom", True),
    (RequestKind.MAIL, "rcptto", False),
    (RequestKind.RCPT, "rcptto", True),
    (RequestKind.OTHER, "mailfrom", False),
    (RequestKind.OTHER, "rcptto", False),
    (RequestKind.LOOKUP, "rcptto", True),
])
def test_phase(kind: RequestKind, phase: str, verified: bool) -> None:
    context = RequestContext(kind, "alice@sender.test",
                             "bob@example.test" if kind is RequestKind.RCPT else "")
    planned = policy(phase=phase).plan(context)
    assert isinstance(planned, Check) is verified
    if isinstance(planned, Skip):
        assert planned.decision is None, "not a decision, only not this request's business"


def test_the_null_sender_is_never_verified() -> None:
    assert excluded_why(policy(), rcpt(sender="")) == "null sender"
    assert excluded_why(policy(), RequestContext(RequestKind.LOOKUP, "")) == "null sender"


def test_the_verifiers_own_callout_sender_is_never_verified() -> None:
    assert excluded_why(policy(), rcpt(sender="PostMaster@Verifier.CBV.test")) == (
        "own callout sender"
    )


def test_authenticated_sessions_are_excluded_unless_told_otherwise() -> None:
    assert excluded_why(policy(), rcpt(sasl="alice")) == "authenticated"
    assert excluded_why(policy(exclude_authenticated=False), rcpt(sasl="alice")) is None


@pytest.mark.parametrize(("entry", "sender", "listed"), [
    ("alice@sender.test", "alice@sender.test", True),
    ("alice@sender.test", "ALICE@Sender.Test", True),
    ("alice@sender.test", "bob@sender.test", False),
    ("sender.test", "anyone@sender.test", True),
    ("sender.test", "anyone@sub.sender.test", False),
    ("*.sender.test", "anyone@sub.sender.test", True),
    ("*.sender.test", "anyone@sender.test", False),
    ("news-*@sender.test", "news-2024@sender.test", True),
    ("news-*@sender.test", "alice@sender.test", False),
    ("*@bücher.test", "kim@BÜCHER.test", True),
    ("*@xn--bcher-kva.test", "kim@bücher.test", True),
])
def test_allowlist(entry: str, sender: str, listed: bool) -> None:
    why = excluded_why(policy(allowlist=[entry]), rcpt(sender=sender))
    assert why == ("allowlisted" if listed else None)


def test_local_senders_by_domain_and_network() -> None:
    site = policy(local_domains=["example.test", "*.corp.test"],
                  local_networks=["192.0.2.0/24", "2001:db8::/32"])
    assert excluded_why(site, rcpt(sender="me@example.test", client="198.51.100.1")) == (
        "local sender"
    )
    assert excluded_why(site, rcpt(sender="me@hq.corp.test", client="198.51.100.1")) == (
        "local sender"
    )
    assert excluded_why(site, rcpt(client="192.0.2.99")) == "local network"
    assert excluded_why(site, rcpt(client="2001:db8::25")) == "local network"
    assert excluded_why(site, rcpt(client="198.51.100.1")) is None
    assert excluded_why(site, rcpt(client="unknown")) is None
    quiet = policy(local_domains=["example.test"], exclude_local=False)
    assert excluded_why(quiet, rcpt(sender="me@example.test", client="127.0.0.1")) is None


def test_loopback_clients_are_local_by_default() -> None:
    assert excluded_why(policy(), rcpt(client="127.0.0.1")) == "local network"
    assert excluded_why(policy(), rcpt(client="::1")) == "local network"


def test_unparseable_senders_are_still_verified_and_judged_there() -> None:
    planned = policy(allowlist=["sender.test"]).plan(rcpt(sender="not an address"))
    assert isinstance(planned, Check)


def test_recipient_verification_checks_recipients_even_from_the_null_sender() -> None:
    site = policy(verify="recipient")
    planned = site.plan(rcpt(sender=""))
    assert isinstance(planned, Check)
    assert planned.address == "bob@example.test"
    mail = site.plan(RequestContext(RequestKind.MAIL, "alice@sender.test"))
    assert isinstance(mail, Skip)
    assert mail.decision is None
    assert excluded_why(site, rcpt(sasl="alice")) == "authenticated"


def failed(address: str = "alice@sender.test") -> Verdict:
    return Verdict(address=address, result=Result.FAIL, reason=Reason.MAILBOX_UNKNOWN,
                   checked_at=utcnow())


def decide_for(site: SitePolicy, recipient: str) -> Action:
    planned = site.plan(rcpt(recipient=recipient))
    assert isinstance(planned, Check)
    return site.decide(planned, failed()).action


def test_per_domain_overrides_replace_global_values() -> None:
    site = policy(domains={
        "lenient.test": {"on_fail": "accept", "add_header": True},
        "*.careful.test": {"on_fail": "quarantine"},
        "careful.test": {"dry_run": True},
    })
    assert decide_for(site, "bob@example.test") is Action.REJECT
    assert decide_for(site, "bob@LENIENT.test") is Action.ACCEPT
    assert decide_for(site, "bob@mx.careful.test") is Action.QUARANTINE
    assert decide_for(site, "bob@a.b.careful.test") is Action.QUARANTINE
    planned = site.plan(rcpt(recipient="bob@careful.test"))
    assert isinstance(planned, Check)
    decision = site.decide(planned, failed())
    assert (decision.action, decision.dry_run) == (Action.REJECT, True)


def test_cbv_for_some_domains_only() -> None:
    site = policy(enabled=False, domains={"protected.test": {"enabled": True}})
    assert excluded_why(site, rcpt(recipient="bob@example.test")) == "disabled"
    assert excluded_why(site, rcpt(recipient="bob@protected.test")) is None
    assert excluded_why(site, RequestContext(RequestKind.MAIL, "alice@sender.test")) == (
        "disabled"
    )


def test_cbv_off_for_one_domain() -> None:
    site = policy(domains={"lists.test": {"enabled": False}})
    assert excluded_why(site, rcpt(recipient="bob@lists.test")) == "disabled"
    assert excluded_why(site, rcpt(recipient="bob@example.test")) is None


def test_a_domain_allowlist_replaces_the_global_one() -> None:
    site = policy(allowlist=["friend.test"],
                  domains={"strict.test": {"allowlist": ["partner.test"]}})
    assert excluded_why(site, rcpt("a@friend.test", "bob@example.test")) == "allowlisted"
    assert excluded_why(site, rcpt("a@friend.test", "bob@strict.test")) is None
    assert excluded_why(site, rcpt("a@partner.test", "bob@strict.test")) == "allowlisted"


def test_per_domain_exclusion_switches_and_recipient_mode() -> None:
    site = policy(domains={"store.test": {"verify": "recipient", "exclude_authenticated": False}})
    planned = site.plan(rcpt(recipient="carol@store.test", sasl="alice"))
    assert isinstance(planned, Check)
    assert planned.address == "carol@store.test"
    assert excluded_why(site, rcpt(sasl="alice")) == "authenticated"


def test_per_domain_reply_texts_fall_back_field_by_field() -> None:
    site = policy(replies={"defer": "451 4.7.1 later"},
                  domains={"fr.test": {"replies": {"reject": "550 5.1.7 adresse invalide"}}})
    planned = site.plan(rcpt(recipient="bob@fr.test"))
    assert isinstance(planned, Check)
    assert site.decide(planned, failed()).reply == "550 5.1.7 adresse invalide"
    deferred = site.decide(planned, Verdict(address="alice@sender.test", result=Result.TRANSIENT,
                                            reason=Reason.TIMEOUT, checked_at=utcnow()))
    assert deferred.reply == "451 4.7.1 later"


@pytest.mark.parametrize(("settings", "message"), [
    ({"on_fail": "bounce"}, "policy.on_fail: Input should be 'reject', 'quarantine' or 'accept'"),
    ({"domains": {"x.test": {"phase": "rcptto"}}}, "policy.domains.x.test.phase: unknown key"),
    ({"domains": {"bad domain": {}}}, "policy.domains: bad domain label 'bad domain'"),
    ({"allowlist": ["two words"]}, "policy.allowlist: 'two words' is not an address, domain"),
    ({"local_networks": ["10.0.0.0/33"]}, "policy.local_networks:"),
    ({"replies": {"defer": "550 5.1.7 x"}}, "policy.replies.defer: '550 5.1.7 x': the code must"),
    ({"replies": {"reject": "550 4.1.7 x"}}, "class differs"),
    ({"subject_tag": "a\nb"}, "policy.subject_tag: the subject tag must be one non-empty line"),
])
def test_bad_policy_settings_are_one_clear_line(settings: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as raised:
        config_from_dict({"policy": settings})
    assert message in str(raised.value)
    assert "\n" not in str(raised.value)
