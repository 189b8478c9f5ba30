"""Exim asking cbv's smtpcbd listener from its RCPT ACL with `${readsocket}`, configured
with the very ACL of docs/integrations/exim.md; accepted mail is relayed to a sink."""

from __future__ import annotations

import re
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from bench.mail_servers import Exim, free_port
from tests.peers.guides import settings, snippet
from tests.peers.mail_world import (
    EXCLUDED,
    EXISTING,
    GREYLISTED,
    UNKNOWN,
    WAIT,
    CbvServe,
    MailWorld,
    require,
    send,
    wait_until,
)

pytestmark = pytest.mark.peers
require("exim")

MX_SAID = ("550 5.1.1 <alice@unknown.zoo.test>; Recipient address rejected; User unknown in "
           "local recipient table")  # cbv's answer line holds no ':', the ACL splits on them


@dataclass
class EximSetup:
    exim: Exim
    port: int
    cbv: CbvServe


@pytest.fixture(scope="module")
def setup(mail_world: MailWorld, started: Callable[[Any], Any]) -> EximSetup:
    cbv = started(mail_world.start_cbv(settings("exim", "cbv-smtpcbd", smtpcbd="127.0.0.1:0")))
    port = free_port()
    exim = started(Exim(
        "readsocket", mail_world.resolver, port,
        acl_rcpt=snippet("exim", "rcpt-acl", smtpcbd=cbv.addresses["smtpcbd"]),
        routers=("to_sink:\n  driver = manualroute\n  domains = +relay_to_domains\n"
                 "  transport = to_sink\n  route_list = * 127.0.0.1\n  self = send\n"),
        transports=f"to_sink:\n  driver = smtp\n  port = {mail_world.sink.port}\n",
    ))
    exim.start()
    return EximSetup(exim, port, cbv)


def test_mail_from_an_existing_sender_is_accepted_and_delivered(
    setup: EximSetup, mail_world: MailWorld
) -> None:
    sent = send(setup.port, EXISTING)
    assert sent.accepted, sent
    assert mail_world.sink.delivered(sent.message_id)["From"] == f"<{EXISTING}>"
    assert setup.cbv.decision(EXISTING)["result"] == "pass"


def test_mail_from_a_non_existent_sender_is_refused_with_cbvs_text(setup: EximSetup) -> None:
    sent = send(setup.port, UNKNOWN)
    assert (sent.stage, sent.code) == ("rcpt", 550), sent
    assert sent.text == (f"5.1.7 <{UNKNOWN}>: Sender address rejected: undeliverable address "
                         f"(mailbox_unknown {MX_SAID})"), sent.text
    logged = f"F=<{UNKNOWN}> rejected RCPT <bob@example.test>: {sent.text}"
    assert wait_until(lambda: logged in setup.exim.log()), setup.exim.log()


def test_a_greylisted_sender_is_deferred(setup: EximSetup) -> None:
    sent = send(setup.port, GREYLISTED)
    assert (sent.stage, sent.code) == ("rcpt", 451), sent
    assert sent.text.startswith(f"4.1.7 <{GREYLISTED}>: Sender address rejected: unverified "
                                "address (greylisted 450 4.2.0 "), sent.text


def test_an_excluded_sender_is_not_verified(setup: EximSetup, mail_world: MailWorld) -> None:
    sent = send(setup.port, EXCLUDED)
    assert sent.accepted, sent
    mail_world.sink.delivered(sent.message_id)
    decision = setup.cbv.decision(EXCLUDED)
    assert (decision["result"], decision["reason"]) == ("excluded", "allowlisted")
    assert mail_world.callouts(EXCLUDED) == 0
    logged = f"cbv: OK:not checked (allowlisted):{EXCLUDED}:-:"
    assert wait_until(lambda: logged in setup.exim.log()), setup.exim.log()


def test_bounces_are_not_asked_about(setup: EximSetup, mail_world: MailWorld) -> None:
    before = len(setup.cbv.logs)
    sent = send(setup.port, "")
    assert sent.accepted, sent
    mail_world.sink.delivered(sent.message_id)
    assert not [e for e in setup.cbv.logs[before:] if e["event"] == "decision"]


def test_cbvs_answer_is_kept_without_its_newline(setup: EximSetup) -> None:
    assert send(setup.port, EXISTING).accepted
    logged = f"cbv: OK:accepted 250 2.1.5 Ok:{EXISTING}:mx1.accepted.zoo.test:"
    assert wait_until(lambda: logged in setup.exim.log()), setup.exim.log()
    line = next(line for line in setup.exim.log().splitlines() if logged in line)
    assert re.fullmatch(r".*:\d+:\d+", line), f"the answer ends in its expiry: {line!r}"


def raw_rcpt_reply(port: int, sender: str) -> list[str]:
    """The lines of Exim's reply to RCPT as they come on the wire."""
    with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as connection:
        replies = connection.makefile("rb")

        def reply() -> list[str]:
            lines = [replies.readline().decode().rstrip("\r\n")]
            while lines[-1][3:4] == "-":
                lines.append(replies.readline().decode().rstrip("\r\n"))
            return lines

        reply()
        for command in ("EHLO client.cbv.test", f"MAIL FROM:<{sender}>"):
            connection.sendall(f"{command}\r\n".encode())
            reply()
        connection.sendall(b"RCPT TO:<bob@example.test>\r\n")
        lines = reply()
        connection.sendall(b"QUIT\r\n")
    return lines


def test_a_long_refusal_comes_in_continuation_lines(setup: EximSetup) -> None:
    assert raw_rcpt_reply(setup.port, UNKNOWN) == [
        "550-5.1.7 <alice@unknown.zoo.test>: Sender address rejected:",
        "550-undeliverable address (mailbox_unknown 550 5.1.1 <alice@unknown.zoo.test>;",
        "550 Recipient address rejected; User unknown in local recipient table)",
    ]
