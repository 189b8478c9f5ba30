"""Postfix with cbv as a milter (`smtpd_milters`), set up as docs/integrations/postfix.md
says: what the policy listener does, plus what only a milter can: the subject tag, the
X-CBV-Result header on the message, and quarantine into Postfix's hold queue; and, with
the guide's blocks as they stand, the refusal at MAIL.
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
    UNKNOWN,
    CbvServe,
    MailWorld,
    require,
    send,
    wait_until,
)

pytestmark = pytest.mark.peers
require("postfix")

TAGGED = "tagged.example.test"  # failed senders accepted with a subject tag
HELD = "held.example.test"  # failed senders quarantined
SITE_POLICY = {"policy": {"add_header": True, "domains": {
    TAGGED: {"on_fail": "accept", "tag_subject": True},
    HELD: {"on_fail": "quarantine"},
}}}
CBV_SAYS = ("undeliverable address (mailbox_unknown; mx1.unknown.zoo.test said: 550 5.1.1 "
            "<alice@unknown.zoo.test>: Recipient address rejected: User unknown in local "
            "recipient table)")


@dataclass
class MilterSetup:
    postfix: Postfix
    port: int
    cbv: CbvServe


@pytest.fixture(scope="module")
def setup(mail_world: MailWorld, started: Callable[[Any], Any]) -> MilterSetup:
    cbv = started(mail_world.start_cbv(
        settings("postfix", "cbv-milter", milter="127.0.0.1:0"), SITE_POLICY))
    port = free_port()
    milter = main_cf_settings(snippet("postfix", "milter", milter=cbv.addresses["milter"]))
    relay = (f"relay_domains = example.test, {TAGGED}, {HELD}\n"
             f"relay_transport = smtp:[127.0.0.1]:{mail_world.sink.port}\n")
    postfix = started(Postfix("milter", mail_world.resolver, relay, {port: milter}))
    postfix.start()
    return MilterSetup(postfix, port, cbv)


def test_mail_from_an_existing_sender_is_delivered_with_cbvs_header(
    setup: MilterSetup, mail_world: MailWorld
) -> None:
    sent = send(setup.port, EXISTING)
    assert sent.accepted, sent
    delivered = mail_world.sink.delivered(sent.message_id)
    assert delivered["X-CBV-Result"] == (f"pass reason=accepted address={EXISTING} "
                                         "mx=mx1.accepted.zoo.test")
    assert setup.cbv.decision(EXISTING)["listener"] == "milter"


def test_mail_from_a_non_existent_sender_is_refused_with_cbvs_text(setup: MilterSetup) -> None:
    sent = send(setup.port, UNKNOWN)
    assert (sent.stage, sent.code, sent.text) == ("rcpt", 550, f"5.1.7 {CBV_SAYS}"), sent
    logged = f"NOQUEUE: milter-reject: RCPT from unknown[127.0.0.1]: 550 5.1.7 {CBV_SAYS}"
    assert wait_until(lambda: logged in setup.postfix.log()), setup.postfix.log()


def test_a_greylisted_sender_is_deferred(setup: MilterSetup) -> None:
    sent = send(setup.port, GREYLISTED)
    assert (sent.stage, sent.code) == ("rcpt", 450), sent
    assert sent.text.startswith("4.1.7 unverified address (greylisted; mx1.greylisting.zoo.test "
                                "said: 450 4.2.0 "), sent.text


def test_an_excluded_sender_is_not_verified(setup: MilterSetup, mail_world: MailWorld) -> None:
    sent = send(setup.port, EXCLUDED)
    assert sent.accepted, sent
    mail_world.sink.delivered(sent.message_id)
    decision = setup.cbv.decision(EXCLUDED)
    assert (decision["result"], decision["reason"]) == ("excluded", "allowlisted")
    assert mail_world.callouts(EXCLUDED) == 0


def test_a_failed_sender_let_through_gets_the_subject_tag_and_the_header(
    setup: MilterSetup, mail_world: MailWorld
) -> None:
    sent = send(setup.port, UNKNOWN, recipient=f"bob@{TAGGED}", subject="quarterly report")
    assert sent.accepted, sent
    delivered = mail_world.sink.delivered(sent.message_id)
    assert delivered["Subject"] == "*** CBV *** quarterly report"
    assert delivered["X-CBV-Result"] == (f"fail reason=mailbox_unknown address={UNKNOWN} "
                                         "mx=mx1.unknown.zoo.test score=1")


def test_a_quarantined_message_lands_in_postfixs_hold_queue(
    setup: MilterSetup, mail_world: MailWorld
) -> None:
    held_before = setup.postfix.held()
    sent = send(setup.port, UNKNOWN, recipient=f"bob@{HELD}")
    assert sent.accepted, sent
    assert wait_until(lambda: len(setup.postfix.held()) == len(held_before) + 1), (
        setup.postfix.log())
    queue_id = sent.text.rpartition(" ")[2]  # "2.0.0 Ok: queued as 4F00DCAFE"
    assert queue_id in setup.postfix.held()
    logged = (f"{queue_id}: milter-hold: END-OF-MESSAGE from unknown[127.0.0.1]: milter "
              "triggers HOLD action")
    assert wait_until(lambda: logged in setup.postfix.log()), setup.postfix.log()
    assert sent.message_id not in [m["Message-ID"] for m in mail_world.sink.messages]
    quarantined = setup.cbv.wait_for(lambda e: e["event"] == "quarantined"
                                     and e["queue_id"] == queue_id)
    assert (quarantined["sender"], quarantined["reason"]) == (UNKNOWN, f"cbv: {CBV_SAYS}")


@pytest.fixture(scope="module")
def guide(mail_world: MailWorld, started: Callable[[Any], Any]) -> MilterSetup:
    """The guide's blocks as they stand, no domain tables: cbv decides at MAIL."""
    cbv = started(mail_world.start_cbv(settings("postfix", "cbv-milter", milter="127.0.0.1:0")))
    port = free_port()
    milter = main_cf_settings(snippet("postfix", "milter", milter=cbv.addresses["milter"]))
    relay = (f"relay_domains = example.test\n"
             f"relay_transport = smtp:[127.0.0.1]:{mail_world.sink.port}\n")
    postfix = started(Postfix("milter-guide", mail_world.resolver, relay, {port: milter}))
    postfix.start()
    return MilterSetup(postfix, port, cbv)


def test_with_the_guides_blocks_the_refusal_comes_at_mail(guide: MilterSetup) -> None:
    sent = send(guide.port, UNKNOWN)
    assert (sent.stage, sent.code, sent.text) == ("mail", 550, f"5.1.7 {CBV_SAYS}"), sent
    logged = f"NOQUEUE: milter-reject: MAIL from unknown[127.0.0.1]: 550 5.1.7 {CBV_SAYS}"
    assert wait_until(lambda: logged in guide.postfix.log()), guide.postfix.log()


def test_at_mail_cbv_calls_out_for_relay_attempts_too(
    guide: MilterSetup, mail_world: MailWorld
) -> None:
    sender = "relaying@catch-all.zoo.test"
    sent = send(guide.port, sender, recipient="someone@elsewhere.test")
    assert (sent.stage, sent.code) == ("rcpt", 454), sent  # Relay access denied
    assert mail_world.callouts(sender) == 1


def test_a_check_policy_service_left_in_costs_warnings_but_mail_flows(
    guide: MilterSetup, mail_world: MailWorld, started: Callable[[Any], Any]
) -> None:
    """Why the guide says to take the policy service out when switching to the milter."""
    dead_policy = f"127.0.0.1:{free_port()}"
    both = {**main_cf_settings(snippet("postfix", "sender-restrictions", policy=dead_policy)),
            **main_cf_settings(snippet("postfix", "milter",
                                       milter=guide.cbv.addresses["milter"]))}
    port = free_port()
    relay = (f"relay_domains = example.test\n"
             f"relay_transport = smtp:[127.0.0.1]:{mail_world.sink.port}\n")
    postfix = started(Postfix("milter-and-policy", mail_world.resolver, relay, {port: both}))
    postfix.start()
    sent = send(port, EXISTING)
    assert sent.accepted, sent
    refused = f"warning: connect to {dead_policy}: Connection refused"
    assert wait_until(lambda: postfix.log().count(refused) >= 2), postfix.log()
    problem = f"warning: problem talking to server {dead_policy}: Connection refused"
    assert wait_until(lambda: problem in postfix.log()), postfix.log()
    assert postfix.log().count(refused) == 2, "two tries for the one RCPT"
