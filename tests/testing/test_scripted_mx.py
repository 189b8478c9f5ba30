import asyncio
import ssl
import time

import pytest

from cbv.testing import MXScript, RawReply, Reply, ScriptedMX
from cbv.testing.mx_script import Stage
from cbv.testing.pytest_plugin import MXFactory
from tests.testing.raw_smtp import Connect, RawSMTP

ACCEPT = Reply(250, "2.1.5 Ok")


async def greeted(connect: Connect, mx: ScriptedMX) -> RawSMTP:
    client = await connect(mx)
    assert (await client.reply())[0] == 220
    assert (await client.cmd("EHLO verifier.test"))[0] == 250
    return client


async def test_default_dialogue_is_a_postfix_knowing_no_users(
    connect: Connect, mx_factory: MXFactory
) -> None:
    mx = await mx_factory()
    client = await connect(mx)
    assert await client.reply() == (220, ["mx.test ESMTP Postfix"])
    code, lines = await client.cmd("EHLO verifier.test")
    assert code == 250
    assert lines == ["mx.test", "PIPELINING", "SIZE 10240000", "ENHANCEDSTATUSCODES", "8BITMIME"]
    assert await client.cmd("MAIL FROM:<>") == (250, ["2.1.0 Ok"])
    assert await client.cmd("RCPT TO:<Nobody@Example.test>") == (
        550,
        [
            "5.1.1 <Nobody@Example.test>: Recipient address rejected: "
            "User unknown in local recipient table"
        ],
    )
    assert await client.cmd("QUIT") == (221, ["2.0.0 Bye"])
    assert await client.at_eof()
    await mx.wait_idle()

    assert mx.connections == 1
    [session] = mx.log
    assert session.peer[0] == "127.0.0.1"
    assert session.commands == [
        "EHLO verifier.test",
        "MAIL FROM:<>",
        "RCPT TO:<Nobody@Example.test>",
        "QUIT",
    ]
    assert mx.commands == session.commands
    assert mx.rcpts == ["Nobody@Example.test"]
    assert not session.tls
    assert not session.closed_by_client
    assert session.done
    assert "DATA" not in mx.commands


async def test_rcpt_rules_first_match_wins_case_insensitively(
    connect: Connect, mx_factory: MXFactory
) -> None:
    script = MXScript(
        rcpt=[
            ("alice@example.test", ACCEPT),
            ("*@full.test", Reply(452, "4.2.2 <{addr}>: mailbox full")),
            ("*@full.test", ACCEPT),
        ]
    )
    client = await greeted(connect, await mx_factory(script=script))
    await client.cmd("MAIL FROM:<>")
    assert (await client.cmd("RCPT TO:<ALICE@example.test>"))[0] == 250
    assert await client.cmd("RCPT TO:<Bob@Full.test>") == (
        452,
        ["4.2.2 <Bob@Full.test>: mailbox full"],
    )
    assert (await client.cmd("RCPT TO:<carol@example.test>"))[0] == 550


async def test_catch_all_accepts_what_no_rule_rejects(
    connect: Connect, mx_factory: MXFactory
) -> None:
    script = MXScript(catch_all=True, rcpt=[("postmaster@*", Reply(550, "5.7.1 no"))])
    client = await greeted(connect, await mx_factory(script=script))
    await client.cmd("MAIL FROM:<>")
    assert (await client.cmd("RCPT TO:<random-7f3a@catchall.test>"))[0] == 250
    assert (await client.cmd("RCPT TO:<postmaster@catchall.test>"))[0] == 550


async def test_greylisting_by_attempts_spans_connections(
    connect: Connect, mx_factory: MXFactory
) -> None:
    mx = await mx_factory(script=MXScript(catch_all=True, greylist_attempts=3))
    codes = []
    for _ in range(3):
        client = await greeted(connect, mx)
        await client.cmd("MAIL FROM:<>")
        code, lines = await client.cmd("RCPT TO:<alice@example.test>")
        codes.append((code, "Greylisted" in lines[0]))
        await client.close()
    assert codes == [(450, True), (450, True), (250, False)]
    assert mx.connections == 3


async def test_greylisting_by_seconds_then_normal_rules(connect: Connect) -> None:
    now = 1000.0
    script = MXScript(greylist_seconds=300)
    async with ScriptedMX(script=script, clock=lambda: now) as mx:
        client = await greeted(connect, mx)
        await client.cmd("MAIL FROM:<>")
        code, lines = await client.cmd("RCPT TO:<alice@example.test>")
        assert code == 450
        assert lines[0].startswith(
            "4.2.0 <alice@example.test>: Recipient address rejected: Greylisted")
        now += 299
        assert (await client.cmd("RCPT TO:<alice@example.test>"))[0] == 450
        now += 1
        assert (await client.cmd("RCPT TO:<alice@example.test>"))[0] == 550  # no rule: unknown
        assert (await client.cmd("RCPT TO:<bob@example.test>"))[0] == 450  # its own clock


async def test_null_sender_refused_and_rcpt_needs_mail(
    connect: Connect, mx_factory: MXFactory
) -> None:
    script = MXScript(mail=[("", Reply(550, "5.7.1 null sender not accepted"))])
    client = await greeted(connect, await mx_factory(script=script))
    assert await client.cmd("MAIL FROM:<>") == (550, ["5.7.1 null sender not accepted"])
    assert (await client.cmd("RCPT TO:<alice@example.test>"))[0] == 503
    assert (await client.cmd("MAIL FROM:<probe@verifier.test>"))[0] == 250
    assert (await client.cmd("MAIL FROM:<probe@verifier.test>"))[0] == 503  # nested
    assert (await client.cmd("RSET"))[0] == 250
    assert (await client.cmd("MAIL FROM: <probe@verifier.test> SIZE=10"))[0] == 250


async def test_mail_before_greeting_is_refused(connect: Connect, mx_factory: MXFactory) -> None:
    client = await connect(await mx_factory())
    await client.reply()
    assert await client.cmd("MAIL FROM:<>") == (503, ["5.5.1 Error: send HELO/EHLO first"])


async def test_rejected_ehlo_falls_back_to_helo(connect: Connect, mx_factory: MXFactory) -> None:
    script = MXScript(ehlo=Reply(502, "5.5.2 Error: command not recognized"))
    client = await connect(await mx_factory(script=script, name="old.mx.test"))
    await client.reply()
    assert (await client.cmd("EHLO verifier.test"))[0] == 502
    assert (await client.cmd("MAIL FROM:<>"))[0] == 503
    assert await client.cmd("HELO verifier.test") == (250, ["old.mx.test"])
    assert (await client.cmd("MAIL FROM:<>"))[0] == 250


async def test_vrfy_rules_and_advertisement(connect: Connect, mx_factory: MXFactory) -> None:
    script = MXScript(
        advertise_vrfy=True,
        vrfy=[("alice@example.test", Reply(250, "2.0.0 <{addr}>"))],
    )
    client = await connect(await mx_factory(script=script))
    await client.reply()
    assert "VRFY" in (await client.cmd("EHLO verifier.test"))[1]
    assert await client.cmd("VRFY <alice@example.test>") == (250, ["2.0.0 <alice@example.test>"])
    assert (await client.cmd("VRFY bob@example.test"))[0] == 252


async def test_housekeeping_commands(connect: Connect, mx_factory: MXFactory) -> None:
    mx = await mx_factory()
    client = await greeted(connect, mx)
    assert await client.cmd("XCLIENT NAME=x") == (500, ["5.5.2 Error: command not recognized"])
    assert (await client.cmd("NOOP"))[0] == 250
    assert (await client.cmd("STARTTLS"))[0] == 502  # not offered
    await client.cmd("MAIL FROM:<>")
    assert (await client.cmd("DATA"))[0] == 354
    assert (await client.cmd("Subject: hi\r\n\r\nbody\r\n."))[0] == 250
    assert "DATA" in mx.commands
    assert "Subject: hi" not in mx.commands


async def test_multiline_and_raw_replies(connect: Connect, mx_factory: MXFactory) -> None:
    script = MXScript(
        banner=Reply(220, ["{name} ESMTP", "no UCE", "welcome"]),
        mail_reply_default=RawReply(b"2x0 what\r\n"),
    )
    client = await connect(await mx_factory(script=script, name="multi.mx.test"))
    assert await client.reply() == (220, ["multi.mx.test ESMTP", "no UCE", "welcome"])
    await client.cmd("EHLO verifier.test")
    await client.send("MAIL FROM:<>")
    assert await client.reader.readline() == b"2x0 what\r\n"


async def test_stage_delays(connect: Connect, mx_factory: MXFactory) -> None:
    script = MXScript(banner_delay=0.1, delays={"banner": 0.1, "rcpt": 0.2})
    mx = await mx_factory(script=script)
    started = time.monotonic()
    client = await connect(mx)
    await client.reply()
    assert time.monotonic() - started >= 0.2
    await client.cmd("EHLO verifier.test")
    await client.cmd("MAIL FROM:<>")
    started = time.monotonic()
    await client.cmd("RCPT TO:<alice@example.test>")
    assert time.monotonic() - started >= 0.2


@pytest.mark.parametrize(
    ("stage", "answered"), [("banner", 0), ("ehlo", 1), ("mail", 2), ("rcpt", 3)]
)
async def test_drop_closes_instead_of_answering(
    connect: Connect, mx_factory: MXFactory, stage: Stage, answered: int
) -> None:
    mx = await mx_factory(script=MXScript(drop_at=stage))
    client = await connect(mx)
    for command in ["EHLO verifier.test", "MAIL FROM:<>", "RCPT TO:<a@example.test>"][:answered]:
        await client.send(command)
    async with asyncio.timeout(5):
        received = await client.reader.read()
    final_lines = [line for line in received.decode().splitlines() if line[3:4] == " "]
    assert len(final_lines) == answered  # every reply before the dropped stage, then EOF
    await mx.wait_idle()
    assert not mx.log[0].closed_by_client


async def test_reset_aborts_with_rst(connect: Connect, mx_factory: MXFactory) -> None:
    client = await greeted(connect, await mx_factory(script=MXScript(reset_at="mail")))
    await client.send("MAIL FROM:<>")
    with pytest.raises(ConnectionResetError):
        await client.reply()


async def test_tarpit_never_greets_but_logs(connect: Connect, mx_factory: MXFactory) -> None:
    mx = await mx_factory(script=MXScript(banner=None))
    client = await connect(mx)
    await client.send("EHLO impatient.test")
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.2):
            await client.reader.readline()
    assert mx.commands == ["EHLO impatient.test"]
    await mx.stop()  # must not hang on the open connection
    assert await client.at_eof()


async def test_client_hangup_is_recorded(connect: Connect, mx_factory: MXFactory) -> None:
    mx = await mx_factory()
    client = await greeted(connect, mx)
    await client.close()
    async with asyncio.timeout(2):
        await mx.wait_idle()
    assert mx.log[0].closed_by_client


async def test_starttls_handshake_then_new_ehlo(connect: Connect, mx_factory: MXFactory) -> None:
    mx = await mx_factory(script=MXScript(starttls=True))
    client = await greeted(connect, mx)
    assert await client.cmd("STARTTLS") == (220, ["2.0.0 Ready to start TLS"])
    await client.starttls()
    cert = client.writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
    assert cert
    assert (await client.cmd("MAIL FROM:<>"))[0] == 503  # must greet again
    code, lines = await client.cmd("EHLO verifier.test")
    assert code == 250
    assert "STARTTLS" not in lines
    assert (await client.cmd("STARTTLS"))[0] == 554
    assert (await client.cmd("MAIL FROM:<>"))[0] == 250
    assert mx.log[0].tls
    assert mx.commands[:3] == ["EHLO verifier.test", "STARTTLS", "MAIL FROM:<>"]


async def test_starttls_advertised_only_when_scripted(
    connect: Connect, mx_factory: MXFactory
) -> None:
    mx = await mx_factory(script=MXScript(starttls=True))
    client = await connect(mx)
    await client.reply()
    assert "STARTTLS" in (await client.cmd("EHLO verifier.test"))[1]


async def test_starttls_refused(connect: Connect, mx_factory: MXFactory) -> None:
    script = MXScript(starttls=True, starttls_reply=Reply(454, "4.7.0 TLS not available"))
    mx = await mx_factory(script=script)
    client = await greeted(connect, mx)
    assert (await client.cmd("STARTTLS"))[0] == 454
    assert (await client.cmd("MAIL FROM:<>"))[0] == 250  # still plaintext, still greeted
    assert not mx.log[0].tls


async def test_starttls_break_fails_the_handshake(connect: Connect, mx_factory: MXFactory) -> None:
    mx = await mx_factory(script=MXScript(starttls=True, starttls_break=True))
    client = await greeted(connect, mx)
    assert (await client.cmd("STARTTLS"))[0] == 220
    with pytest.raises((ssl.SSLError, ConnectionError)):
        await client.starttls()
    assert not mx.log[0].tls


async def test_many_concurrent_sessions(connect: Connect, mx_factory: MXFactory) -> None:
    mx = await mx_factory(script=MXScript(catch_all=True))

    async def probe(i: int) -> int:
        client = await greeted(connect, mx)
        await client.cmd("MAIL FROM:<>")
        code, _ = await client.cmd(f"RCPT TO:<user{i}@example.test>")
        await client.cmd("QUIT")
        await client.close()
        return code

    codes = await asyncio.gather(*(probe(i) for i in range(100)))
    assert codes == [250] * 100
    assert mx.connections == 100
    assert sorted(mx.rcpts) == sorted(f"user{i}@example.test" for i in range(100))


def test_script_rejects_unknown_stage_names() -> None:
    with pytest.raises(ValueError, match="unknown stages"):
        MXScript(delays={"rcpt_to": 1.0})


async def test_context_manager_picks_a_port(connect: Connect) -> None:
    async with ScriptedMX(host="127.0.0.3") as mx:
        assert mx.port > 0
        client = await connect(mx)
        assert (await client.reply())[0] == 220
        await client.close()
