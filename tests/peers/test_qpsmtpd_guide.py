"""qpsmtpd set up as docs/integrations/qpsmtpd.md says: its `smtp_callback` plugin, exactly
as its author published it, asking cbv's smtpcbd listener; accepted mail is queued on to
a sink with qpsmtpd's own queue/smtp-forward plugin."""

from __future__ import annotations

import hashlib
import re
import smtplib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from bench.mail_servers import free_port
from tests.peers.guides import settings, snippet
from tests.peers.mail_world import (
    EXCLUDED,
    EXISTING,
    GREYLISTED,
    UNKNOWN,
    WAIT,
    CbvServe,
    MailWorld,
    Sent,
    require,
    send,
)
from tests.peers.qpsmtpd_server import PLUGIN, Qpsmtpd

pytestmark = pytest.mark.peers
require()

# sha256 of smtp_callback.pl as its author published it: the tests run it unchanged
PUBLISHED_PLUGIN = "e2671ead4fc6fd4d12681360747e2a1ec41fced11548852fbc8ebd92cfe9c97f"
STAMP = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d{4}"


def forward_to(mail_world: MailWorld) -> str:
    """The plugins line that queues accepted mail on to the sink."""
    return f"queue/smtp-forward 127.0.0.1 {mail_world.sink.port}\n"


@dataclass
class QpsmtpdSetup:
    qpsmtpd: Qpsmtpd
    cbv: CbvServe


@pytest.fixture(scope="module")
def setup(mail_world: MailWorld, started: Callable[[Any], Any]) -> QpsmtpdSetup:
    cbv = started(mail_world.start_cbv(settings("qpsmtpd", "cbv-smtpcbd",
                                                smtpcbd="127.0.0.1:0")))
    plugins = snippet("qpsmtpd", "plugins", smtpcbd=cbv.addresses["smtpcbd"])
    qpsmtpd = started(Qpsmtpd("", "example.test", plugins=plugins + forward_to(mail_world)))
    qpsmtpd.start()
    return QpsmtpdSetup(qpsmtpd, cbv)


def test_the_plugin_is_the_one_its_author_published() -> None:
    assert hashlib.sha256(PLUGIN.read_bytes()).hexdigest() == PUBLISHED_PLUGIN


def test_mail_from_an_existing_sender_is_accepted_and_delivered(
    setup: QpsmtpdSetup, mail_world: MailWorld
) -> None:
    sent = send(setup.qpsmtpd.port, EXISTING)
    assert sent.accepted, sent
    assert mail_world.sink.delivered(sent.message_id)["From"] == f"<{EXISTING}>"
    assert setup.cbv.decision(EXISTING)["result"] == "pass"


def test_mail_from_a_non_existent_sender_is_refused_with_cbvs_text(setup: QpsmtpdSetup) -> None:
    sent = send(setup.qpsmtpd.port, UNKNOWN)
    assert (sent.stage, sent.code) == ("rcpt", 550), sent
    assert re.fullmatch(
        f"{UNKNOWN} doesn't exist according to mx1.unknown.zoo.test: mailbox_unknown 550 5.1.1 "
        f"<{UNKNOWN}>; Recipient address rejected; User unknown in local recipient table. "
        rf"Unchanged since {STAMP}, next check {STAMP} \(#5.1.8\)", sent.text), sent.text


def test_a_greylisted_sender_is_deferred(setup: QpsmtpdSetup) -> None:
    sent = send(setup.qpsmtpd.port, GREYLISTED)
    assert (sent.stage, sent.code) == ("rcpt", 450), sent
    assert sent.text.startswith(f"{GREYLISTED} has a temporary problem according to "
                                "mx1.greylisting.zoo.test: greylisted 450 4.2.0 "), sent.text


def test_an_excluded_sender_is_not_verified(setup: QpsmtpdSetup, mail_world: MailWorld) -> None:
    sent = send(setup.qpsmtpd.port, EXCLUDED)
    assert sent.accepted, sent
    mail_world.sink.delivered(sent.message_id)
    decision = setup.cbv.decision(EXCLUDED)
    assert (decision["result"], decision["reason"]) == ("excluded", "allowlisted")
    assert mail_world.callouts(EXCLUDED) == 0


def send_to_two(port: int, sender: str) -> list[tuple[int, str]]:
    """MAIL, then two RCPTs of one message: the replies to the RCPTs."""
    with smtplib.SMTP("127.0.0.1", port, local_hostname="client.cbv.test", timeout=WAIT) as smtp:
        smtp.ehlo()
        smtp.mail(sender)
        replies = [smtp.rcpt(f"{name}@example.test") for name in ("bob", "carol")]
        smtp.rset()
    return [(code, text.decode()) for code, text in replies]


def test_a_kept_fail_refuses_the_other_recipients_without_asking_again(
    setup: QpsmtpdSetup, mail_world: MailWorld
) -> None:
    sender = "second-fail@unknown.zoo.test"
    replies = send_to_two(setup.qpsmtpd.port, sender)
    assert [code for code, _ in replies] == [550, 550], replies
    assert mail_world.callouts(sender) == 1
    setup.cbv.decision(sender)  # the log line is read from cbv's stderr after the answer
    assert len([e for e in setup.cbv.logs if e.get("address") == sender]) == 1


def test_after_a_tempfail_the_other_recipients_are_accepted(setup: QpsmtpdSetup) -> None:
    sender = "second-grey@greylisting.zoo.test"
    replies = send_to_two(setup.qpsmtpd.port, sender)
    assert [code for code, _ in replies] == [450, 250], replies
    assert replies[1][1] == "<carol@example.test>, recipient ok"


def with_cbv_down(mail_world: MailWorld, logging: str) -> tuple[Sent, str]:
    """One message through a qpsmtpd whose cbv does not listen, with that logging file."""
    nobody_listens = f"127.0.0.1:{free_port()}"
    plugins = snippet("qpsmtpd", "plugins", smtpcbd=nobody_listens)
    qpsmtpd = Qpsmtpd("", "example.test", plugins=plugins + forward_to(mail_world),
                      logging=logging)
    try:
        qpsmtpd.start()
        return send(qpsmtpd.port, EXISTING), qpsmtpd.log()
    finally:
        qpsmtpd.stop()


def test_mail_flows_while_cbv_is_down_without_a_logging_plugin(mail_world: MailWorld) -> None:
    sent, log = with_cbv_down(mail_world, snippet("qpsmtpd", "logging"))
    assert sent.accepted, sent
    mail_world.sink.delivered(sent.message_id)
    assert "FATAL PLUGIN ERROR [smtp_callback]" in log


def test_with_debians_logging_plugin_mail_is_deferred_while_cbv_is_down(
    mail_world: MailWorld
) -> None:
    debian = snippet("qpsmtpd", "debian-logging").replace("/var/log/qpsmtpd", "{logs}")
    sent, log = with_cbv_down(mail_world, debian)
    assert (sent.stage, sent.code, sent.text) == (
        "rcpt", 450, "No plugin decided if relaying is allowed"), sent
    assert "FATAL PLUGIN ERROR [smtp_callback]" in log
