"""The milter listener against an MTA played with cbv's own codec over a real socket:
negotiation, answers at MAIL or RCPT, what the end of the message changes, several
transactions per connection, exclusions from macros, and bad input."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from cbv.protocol.milter import (
    SMFIA,
    SMFIC,
    SMFIF,
    SMFIM,
    SMFIP,
    Abort,
    AddHeader,
    ChangeHeader,
    Connect,
    Continue,
    DefineMacro,
    EndOfMessage,
    Header,
    Quarantine,
    QuitNewConnection,
    ReplyCode,
    encode_packet,
)
from cbv.servers.daemon import Daemon
from cbv.servers.logs import fields_of
from cbv.testing import MXFarm
from tests.servers.clients import running, sender_domains, server_config
from tests.servers.milter_client import MilterClient
from tests.world import World

TAGGED = "tag.test"  # recipients whose failed senders are let through, tagged
HELD = "held.test"  # recipients whose failed senders' mail is quarantined
MARKING = {
    "add_header": True,
    "domains": {
        TAGGED: {"on_fail": "accept", "tag_subject": True, "score": 2.5},
        HELD: {"on_fail": "quarantine"},
    },
}


@pytest_asyncio.fixture
async def farm(world: World) -> MXFarm:
    return await sender_domains(world)


@pytest_asyncio.fixture
async def start(world: World, farm: MXFarm) -> AsyncIterator[Callable[..., Any]]:
    """`await start(policy={...}, server={...})`: a daemon with only the milter listening."""
    daemons: list[Any] = []

    async def starting(**sections: dict[str, Any]) -> Daemon:
        server = {"policy": "", "smtpcbd": "", "milter": "127.0.0.1:0"}
        server.update(sections.pop("server", {}))
        policy: dict[str, Any] = {"local_networks": []}
        policy.update(sections.pop("policy", {}))
        context = running(server_config(world, farm, server=server, policy=policy, **sections))
        daemons.append(context)
        return await context.__aenter__()

    yield starting
    for context in reversed(daemons):
        await context.__aexit__(None, None, None)


def decisions(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    return [fields_of(r) for r in caplog.records if r.name == "cbv.decision"]


async def test_negotiation_asks_only_for_what_the_policy_needs(start: Any) -> None:
    plain = await start()
    milter = await MilterClient.connect(plain.addresses()["milter"])
    reply = await milter.negotiate()
    assert reply.version == 6
    assert reply.actions == SMFIF.SETSYMLIST, "no message changes, only the macros it reads"
    for left_out in (SMFIP.NOBODY, SMFIP.NOHDRS, SMFIP.NOEOH, SMFIP.NORCPT, SMFIP.NOHELO,
                     SMFIP.NODATA, SMFIP.NOUNKNOWN, SMFIP.NR_CONN):
        assert left_out in reply.protocol, left_out
    assert not reply.protocol & (SMFIP.NOMAIL | SMFIP.NR_MAIL), "the answer is given at MAIL"
    assert dict(reply.symbol_lists)[SMFIM.ENVFROM] == "i {auth_authen}"

    marking = await start(policy=MARKING)
    milter = await MilterClient.connect(marking.addresses()["milter"])
    reply = await milter.negotiate()
    assert reply.actions == (SMFIF.ADDHDRS | SMFIF.CHGHDRS | SMFIF.QUARANTINE
                             | SMFIF.SETSYMLIST)
    assert SMFIP.NR_HDR in reply.protocol and SMFIP.NOHDRS not in reply.protocol
    assert SMFIP.NOBODY in reply.protocol
    assert not reply.protocol & (SMFIP.NORCPT | SMFIP.NR_RCPT), "domain tables: RCPT decides"
    assert SMFIP.NR_MAIL in reply.protocol, "MAIL only starts the callout"


async def test_mail_phase_rejects_and_defers_with_the_reply_text(
    start: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="cbv")
    daemon = await start()
    milter = await MilterClient.negotiated(daemon.addresses()["milter"])
    [reply] = await milter.mail("nobody@fail.test") or []
    assert isinstance(reply, ReplyCode)
    assert (reply.reply_code, reply.enhanced) == (550, "5.1.7")
    assert reply.text.startswith("undeliverable address (mailbox_unknown; mx.fail.test said: 550")
    await milter.send(Abort())
    [reply] = await milter.mail("someone@grey.test") or []
    assert isinstance(reply, ReplyCode) and reply.line.startswith("450 4.1.7 unverified address")
    assert "greylisted" in reply.text
    assert await milter.mail("alice@pass.test") == [Continue()], "a new MAIL: a new transaction"
    logged = decisions(caplog)
    assert [(d["address"], d["result"], d["action"]) for d in logged] == [
        ("nobody@fail.test", "fail", "reject"), ("someone@grey.test", "transient", "defer"),
        ("alice@pass.test", "pass", "accept")]
    assert all(d["listener"] == "milter" and d["client"] == "192.0.2.7" for d in logged)
    assert logged[0]["answer"].startswith("550 5.1.7 undeliverable address (mailbox_unknown")


async def test_rcpt_phase_answers_each_recipient(start: Any) -> None:
    daemon = await start(policy={"phase": "rcptto"})
    milter = await MilterClient.negotiated(daemon.addresses()["milter"])
    assert milter.left_out(SMFIP.NR_MAIL)
    assert await milter.mail("nobody@fail.test") is None, "MAIL goes unanswered"
    [reply] = await milter.rcpt("bob@example.test") or []
    assert isinstance(reply, ReplyCode) and reply.reply_code == 550
    await milter.send(Abort())
    await milter.mail("alice@pass.test")
    assert await milter.rcpt("bob@example.test") == [Continue()]
    assert await milter.ask(EndOfMessage()) == [Continue()], "nothing to mark"


async def test_end_of_message_adds_the_header_score_tag_once_and_quarantines(
    start: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="cbv")
    daemon = await start(policy=MARKING)
    milter = await MilterClient.negotiated(daemon.addresses()["milter"])
    await milter.mail("nobody@fail.test")
    assert await milter.rcpt(f"bob@{TAGGED}") == [Continue()]
    assert await milter.rcpt(f"carol@{TAGGED}") == [Continue()], "two rules, the same tag"
    [refused] = await milter.rcpt("dave@example.test") or []
    assert isinstance(refused, ReplyCode) and refused.reply_code == 550, "default: reject"
    await milter.send(Header("From", "Nobody <nobody@fail.test>"),
                      Header("Subject", "quarterly report"))
    changes = await milter.ask(EndOfMessage())
    header = AddHeader("X-CBV-Result", "fail reason=mailbox_unknown address=nobody@fail.test "
                                       "mx=mx.fail.test score=2.5")
    assert changes == [header, AddHeader("X-CBV-Score", "2.5"),
                       ChangeHeader(1, "Subject", "*** CBV *** quarterly report"), Continue()]

    await milter.mail("nobody@fail.test")
    assert await milter.rcpt(f"bob@{HELD}") == [Continue()]
    logged = decisions(caplog)[-1]
    assert (logged["action"], logged["answer"]) == ("quarantine", "quarantine at end of message")
    await milter.send(Header("Subject", "*** CBV *** already tagged"))
    [quarantine, done] = await milter.ask(EndOfMessage())
    assert isinstance(quarantine, Quarantine) and done == Continue()
    assert quarantine.reason.startswith("cbv: undeliverable address (mailbox_unknown; ")

    await milter.mail("alice@pass.test")
    await milter.rcpt(f"bob@{TAGGED}")
    await milter.send(Header("Subject", "hello"))
    assert await milter.ask(EndOfMessage()) == [
        AddHeader("X-CBV-Result", "pass reason=accepted address=alice@pass.test mx=mx.pass.test"),
        Continue()]


async def test_abort_ends_the_transaction_not_the_connection(start: Any) -> None:
    daemon = await start(policy=MARKING)
    milter = await MilterClient.negotiated(daemon.addresses()["milter"])
    await milter.mail("nobody@fail.test")
    await milter.rcpt(f"bob@{TAGGED}")
    await milter.send(Abort())
    await milter.mail("alice@pass.test")
    await milter.rcpt(f"bob@{TAGGED}")
    await milter.send(Header("Subject", "second message"))
    changes = await milter.ask(EndOfMessage())
    assert [type(change) for change in changes] == [AddHeader, Continue], changes
    assert isinstance(changes[0], AddHeader) and changes[0].value.startswith("pass ")

    await milter.send(QuitNewConnection(), Connect("other.example", SMFIA.INET, 25, "192.0.2.8"))
    await milter.mail("nobody@fail.test")
    [reply] = await milter.rcpt("dave@example.test") or []
    assert isinstance(reply, ReplyCode), "a new SMTP session on the same milter connection"


async def test_exclusions_from_macros_and_the_client_address(
    start: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="cbv")
    daemon = await start(policy={"local_networks": ["192.0.2.0/24"]})
    address = daemon.addresses()["milter"]
    milter = await MilterClient.negotiated(address, client="198.51.100.9")
    assert await milter.mail("nobody@fail.test", **{"{auth_authen}": "alice"}) == [Continue()]
    [reply] = await milter.mail("nobody@fail.test") or []
    assert isinstance(reply, ReplyCode), "the next MAIL is not authenticated: verified"
    local = await MilterClient.negotiated(address, client="192.0.2.7")
    assert await local.mail("nobody@fail.test") == [Continue()]
    unknown = await MilterClient.connect(address)
    await unknown.negotiate()
    await unknown.send(DefineMacro(SMFIC.CONNECT, (("{client_addr}", "192.0.2.9"),)),
                       Connect("localhost", SMFIA.UNKNOWN))
    assert await unknown.mail("nobody@fail.test") == [Continue()]
    assert [(d["result"], d["reason"]) for d in decisions(caplog)] == [
        ("excluded", "authenticated"), ("fail", "mailbox_unknown"),
        ("excluded", "local network"), ("excluded", "local network")]


async def test_a_malformed_packet_closes_only_its_connection(
    start: Any, caplog: pytest.LogCaptureFixture
) -> None:
    daemon = await start()
    address = daemon.addresses()["milter"]
    broken = await MilterClient.negotiated(address)
    others = [await MilterClient.negotiated(address) for _ in range(2)]
    await broken.write(b"\x00\x00\x00\x00")  # a length that does not count the command byte
    assert await broken.closed_by_filter()
    late = await MilterClient.connect(address)
    await late.write(encode_packet(SMFIC.MAIL, b"<a@b.test>\0"))  # before any negotiation
    assert await late.closed_by_filter()
    for milter in others:
        [reply] = await milter.mail("nobody@fail.test") or []
        assert isinstance(reply, ReplyCode)
    reasons = [fields_of(r)["reason"] for r in caplog.records
               if r.getMessage().startswith("milter protocol error")]
    assert reasons == ["milter packet length 0: it must count the command byte",
                       "milter Mail before option negotiation"]


async def test_unknown_commands_are_answered_continue(start: Any) -> None:
    daemon = await start()
    milter = await MilterClient.negotiated(daemon.addresses()["milter"])
    await milter.write(encode_packet(ord("Z"), b"from a newer MTA"))
    assert await milter.responses() == [Continue()]
    [reply] = await milter.mail("nobody@fail.test") or []
    assert isinstance(reply, ReplyCode), "the connection goes on"


async def test_a_slow_callout_is_answered_in_progress_and_the_connection_goes_on(
    start: Any
) -> None:
    daemon = await start(server={"answer_within": 0.1})
    milter = await MilterClient.negotiated(daemon.addresses()["milter"])
    [reply] = await milter.mail("someone@slow.test") or []
    assert isinstance(reply, ReplyCode)
    assert reply.line == "450 4.1.7 unverified address: address verification in progress"
    [reply] = await milter.mail("nobody@fail.test") or []
    assert isinstance(reply, ReplyCode) and reply.reply_code == 550


async def test_on_a_unix_socket(start: Any, tmp_path: Path) -> None:
    daemon = await start(server={"milter": f"unix:{tmp_path / 'milter.sock'}"})
    assert daemon.addresses()["milter"] == f"unix:{tmp_path / 'milter.sock'}"
    milter = await MilterClient.negotiated(daemon.addresses()["milter"])
    assert await milter.mail("alice@pass.test") == [Continue()]
