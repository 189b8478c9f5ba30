"""A real Sendmail 8.17 with cbv as its milter, set up as docs/integrations/sendmail.md
says: the guide's INPUT_MAIL_FILTER line as it stands, the guide's cbv.toml, and a site
policy with the header, the subject tag and quarantine; accepted mail goes to a sink."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from bench.mail_servers import free_port
from tests.missing import missing
from tests.peers.guides import settings, snippet
from tests.peers.mail_world import (
    EXCLUDED,
    EXISTING,
    RECIPIENT,
    UNKNOWN,
    CbvServe,
    MailWorld,
    require,
    send,
)
from tests.peers.sendmail_server import Sendmail, unavailable

pytestmark = pytest.mark.peers
require()
if (reason := unavailable()) is not None:
    missing(f"cannot test against Sendmail: {reason}")

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
class SendmailSetup:
    sendmail: Sendmail
    cbv: CbvServe


def sendmail_asking(mail_world: MailWorld, milter: str, *domains: str) -> Sendmail:
    """A started Sendmail whose sendmail.mc has the guide's line, asking cbv at `milter`."""
    host, port = milter.split(":")
    line = snippet("sendmail", "mc", sendmail_milter=f"{port}@{host}")
    sendmail = Sendmail(mail_world.resolver, line, ("example.test", *domains),
                        mail_world.sink.port)
    try:
        sendmail.start()
    except RuntimeError:
        sendmail.stop()
        raise
    return sendmail


@pytest.fixture(scope="module")
def guide(mail_world: MailWorld, started: Callable[[Any], Any]) -> SendmailSetup:
    """The guide's set-up as it stands: cbv decides at MAIL."""
    cbv = started(mail_world.start_cbv(settings("sendmail", "cbv-milter", milter="127.0.0.1:0")))
    return SendmailSetup(started(sendmail_asking(mail_world, cbv.addresses["milter"])), cbv)


@pytest.fixture(scope="module")
def site(mail_world: MailWorld, started: Callable[[Any], Any]) -> SendmailSetup:
    """With per-domain tables: cbv decides at RCPT, marks and quarantines."""
    cbv = started(mail_world.start_cbv(
        settings("sendmail", "cbv-milter", milter="127.0.0.1:0"), SITE_POLICY))
    sendmail = sendmail_asking(mail_world, cbv.addresses["milter"], TAGGED, HELD)
    return SendmailSetup(started(sendmail), cbv)


def test_mail_from_an_existing_sender_is_delivered(
    guide: SendmailSetup, mail_world: MailWorld
) -> None:
    sent = send(guide.sendmail.port, EXISTING)
    assert sent.accepted, (sent, guide.sendmail.log())
    assert mail_world.sink.delivered(sent.message_id)["From"] == f"<{EXISTING}>"
    decision = guide.cbv.decision(EXISTING)
    assert (decision["listener"], decision["result"]) == ("milter", "pass")


def test_a_non_existent_sender_is_refused_at_mail_with_cbvs_text(guide: SendmailSetup) -> None:
    sent = send(guide.sendmail.port, UNKNOWN)
    assert (sent.stage, sent.code, sent.text) == (
        "mail", 550, f"5.1.7 <{UNKNOWN}>... {CBV_SAYS}"), sent
    logged = guide.sendmail.syslog.wait_for(
        lambda line: f"Milter: from=<{UNKNOWN}>, reject=550 5.1.7 {CBV_SAYS}" in line)
    assert logged is not None, guide.sendmail.log()


def test_an_excluded_sender_is_not_verified(guide: SendmailSetup, mail_world: MailWorld) -> None:
    sent = send(guide.sendmail.port, EXCLUDED)
    assert sent.accepted, sent
    mail_world.sink.delivered(sent.message_id)
    decision = guide.cbv.decision(EXCLUDED)
    assert (decision["result"], decision["reason"]) == ("excluded", "allowlisted")
    assert mail_world.callouts(EXCLUDED) == 0


def test_with_domain_tables_the_refusal_is_at_rcpt_naming_the_recipient(
    site: SendmailSetup
) -> None:
    sent = send(site.sendmail.port, UNKNOWN)
    assert (sent.stage, sent.code, sent.text) == (
        "rcpt", 550, f"5.1.7 <{RECIPIENT}>... {CBV_SAYS}"), sent
    logged = site.sendmail.syslog.wait_for(
        lambda line: f"Milter: to=<{RECIPIENT}>, reject=550 5.1.7 {CBV_SAYS}" in line)
    assert logged is not None, site.sendmail.log()


def test_a_failed_sender_let_through_gets_the_subject_tag_and_the_header(
    site: SendmailSetup, mail_world: MailWorld
) -> None:
    sent = send(site.sendmail.port, UNKNOWN, recipient=f"bob@{TAGGED}", subject="quarterly report")
    assert sent.accepted, sent
    delivered = mail_world.sink.delivered(sent.message_id)
    assert delivered["Subject"] == "*** CBV *** quarterly report"
    assert delivered["X-CBV-Result"] == (f"fail reason=mailbox_unknown address={UNKNOWN} "
                                         "mx=mx1.unknown.zoo.test score=1")


def test_a_quarantined_message_waits_and_is_released_as_the_guide_says(
    site: SendmailSetup, mail_world: MailWorld
) -> None:
    sent = send(site.sendmail.port, UNKNOWN, recipient=f"bob@{HELD}")
    assert sent.accepted, sent
    queue_id = sent.text.split()[1]  # "2.0.0 4B5CQx0K012345 Message accepted for delivery"
    assert re.search(rf"^{queue_id}\b.*\n(.*\n)*?\s+QUARANTINE: cbv: ", site.sendmail.quarantined(),
                     re.M), site.sendmail.quarantined()
    quarantined = site.cbv.wait_for(lambda e: e["event"] == "quarantined")
    assert (quarantined["queue_id"], quarantined["sender"]) == (queue_id, UNKNOWN)
    assert sent.message_id not in [m["Message-ID"] for m in mail_world.sink.messages]
    logged = site.sendmail.syslog.wait_for(
        lambda line: f"{queue_id}: milter=cbv, quarantine=cbv: {CBV_SAYS}" in line)
    assert logged is not None, site.sendmail.log()

    site.sendmail.run("-Q", f"-qI{queue_id}")  # without -qQ: not among quarantined mail
    assert queue_id in site.sendmail.quarantined()
    site.sendmail.run("-Q", "-qQ", f"-qI{queue_id}")  # the guide's release
    assert queue_id not in site.sendmail.quarantined()
    site.sendmail.run(f"-qI{queue_id}")  # the next queue run, at once
    assert mail_world.sink.delivered(sent.message_id)["From"] == f"<{UNKNOWN}>"


def test_mail_flows_while_cbv_is_down(mail_world: MailWorld) -> None:
    sendmail = sendmail_asking(mail_world, f"127.0.0.1:{free_port()}")
    try:
        sent = send(sendmail.port, EXISTING)
        assert sent.accepted, (sent, sendmail.log())
        mail_world.sink.delivered(sent.message_id)
    finally:
        sendmail.stop()
