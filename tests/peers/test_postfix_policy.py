"""Postfix asking cbv by policy delegation (`check_policy_service`), configured with the
very snippets of docs/integrations/postfix.md.

One Postfix, two smtpd listeners: one lists cbv in `smtpd_sender_restrictions` (cbv's
default phase), the other in `smtpd_recipient_restrictions` with `phase = "rcptto"`, each
asking a `cbv serve` of its own. Mail is offered over SMTP as a sending server would, and
accepted mail is relayed to a sink.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from bench.mail_servers import Postfix, free_port, main_cf_settings
from tests.peers.guides import settings, snippet
from tests.peers.mail_world import (
    EXCLUDED,
    EXISTING,
    GREYLISTED,
    RECIPIENT,
    UNKNOWN,
    CbvServe,
    MailWorld,
    require,
    send,
    wait_until,
)

pytestmark = pytest.mark.peers
require("postfix")

SENDER_LIST = "sender-restrictions"
RECIPIENT_LIST = "recipient-restrictions"
DRY_RUN_DOMAIN = "dryrun.example.test"
DRY_RUN_TABLE = {"policy": {"domains": {DRY_RUN_DOMAIN: {"dry_run": True}}}}
MX_SAID = ("mx1.unknown.zoo.test said: 550 5.1.1 <alice@unknown.zoo.test>: Recipient address "
           "rejected: User unknown in local recipient table")


@dataclass
class PolicySetup:
    postfix: Postfix
    ports: dict[str, int]
    cbv: dict[str, CbvServe]


@pytest.fixture(scope="module")
def setup(mail_world: MailWorld, started: Callable[[Any], Any]) -> PolicySetup:
    cbv = {
        restrictions: started(mail_world.start_cbv(
            settings("postfix", guide_config, policy="127.0.0.1:0"), DRY_RUN_TABLE))
        for restrictions, guide_config in ((SENDER_LIST, "cbv-policy"),
                                           (RECIPIENT_LIST, "cbv-rcptto"))
    }
    ports = {name: free_port() for name in cbv}
    listeners = {
        ports[name]: main_cf_settings(snippet("postfix", name, policy=daemon.addresses["policy"]))
        for name, daemon in cbv.items()
    }
    relay = (f"relay_domains = example.test, {DRY_RUN_DOMAIN}\n"
             f"relay_transport = smtp:[127.0.0.1]:{mail_world.sink.port}\n")
    postfix = started(Postfix("policy", mail_world.resolver, relay, listeners))
    postfix.start()
    return PolicySetup(postfix, ports, cbv)


both_lists = pytest.mark.parametrize("restrictions", [SENDER_LIST, RECIPIENT_LIST])


@both_lists
def test_mail_from_an_existing_sender_is_accepted_and_delivered(
    setup: PolicySetup, mail_world: MailWorld, restrictions: str
) -> None:
    sent = send(setup.ports[restrictions], EXISTING)
    assert sent.accepted, sent
    assert mail_world.sink.delivered(sent.message_id)["From"] == f"<{EXISTING}>"
    decision = setup.cbv[restrictions].decision(EXISTING)
    assert (decision["result"], decision["reason"], decision["action"]) == (
        "pass", "accepted", "accept")


@pytest.mark.parametrize(("restrictions", "rejected"), [
    (SENDER_LIST, f"5.1.7 <{UNKNOWN}>: Sender address rejected"),
    # Postfix names the recipient and turns cbv's 5.1.7 into its recipient class, 5.1.3
    (RECIPIENT_LIST, f"5.1.3 <{RECIPIENT}>: Recipient address rejected"),
])
def test_mail_from_a_non_existent_sender_is_refused_with_cbvs_text(
    setup: PolicySetup, restrictions: str, rejected: str
) -> None:
    sent = send(setup.ports[restrictions], UNKNOWN)
    assert (sent.stage, sent.code) == ("rcpt", 550), sent
    assert sent.text == (f"{rejected}: undeliverable address "
                         f"(mailbox_unknown; {MX_SAID})"), sent.text
    logged = f"NOQUEUE: reject: RCPT from unknown[127.0.0.1]: 550 {sent.text}"
    assert wait_until(lambda: logged in setup.postfix.log()), setup.postfix.log()


@both_lists
def test_a_greylisted_sender_is_deferred(setup: PolicySetup, restrictions: str) -> None:
    sent = send(setup.ports[restrictions], GREYLISTED)
    assert (sent.stage, sent.code) == ("rcpt", 450), sent
    assert ": unverified address (greylisted; mx1.greylisting.zoo.test said: 450 4.2.0 " in (
        sent.text)


@both_lists
def test_an_excluded_sender_is_not_verified(
    setup: PolicySetup, mail_world: MailWorld, restrictions: str
) -> None:
    sent = send(setup.ports[restrictions], EXCLUDED)
    assert sent.accepted, sent
    mail_world.sink.delivered(sent.message_id)
    decision = setup.cbv[restrictions].decision(EXCLUDED)
    assert (decision["result"], decision["reason"]) == ("excluded", "allowlisted")
    assert mail_world.callouts(EXCLUDED) == 0


def test_a_dry_run_lets_the_mail_through_and_postfix_logs_what_cbv_would_do(
    setup: PolicySetup, mail_world: MailWorld
) -> None:
    sent = send(setup.ports[SENDER_LIST], UNKNOWN, recipient=f"bob@{DRY_RUN_DOMAIN}")
    assert sent.accepted, sent
    mail_world.sink.delivered(sent.message_id)
    warning = (f"warn: RCPT from unknown[127.0.0.1]: cbv dry run: would reject <{UNKNOWN}>: "
               f"550 5.1.7 undeliverable address (mailbox_unknown; {MX_SAID})")
    assert wait_until(lambda: warning in setup.postfix.log()), setup.postfix.log()


@both_lists
def test_bounces_are_not_verified(setup: PolicySetup, mail_world: MailWorld,
                                  restrictions: str) -> None:
    sent = send(setup.ports[restrictions], "")
    assert sent.accepted, sent
    mail_world.sink.delivered(sent.message_id)
    decision = setup.cbv[restrictions].decision("")
    assert (decision["result"], decision["reason"]) == ("excluded", "null sender")


def test_a_sender_with_a_quoted_local_part_is_verified_as_it_was_sent(
    setup: PolicySetup, mail_world: MailWorld
) -> None:
    """Postfix sends policy attributes in its internal form (`sender=john doe@...`)."""
    quoted = '"john doe"@catch-all.zoo.test'
    sent = send(setup.ports[SENDER_LIST], quoted)
    assert sent.accepted, sent
    assert mail_world.callouts(quoted) == 1
