"""Abuse resistance through the listeners: what a client asks must never make cbv dial a
forbidden network, put a client's bytes on the SMTP wire, or verify the null sender or
cbv's own callout senders."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

import pytest
import pytest_asyncio

from cbv.servers.daemon import Daemon
from cbv.testing import MXFarm, MXScript, Reply, ScriptedMX
from tests.servers.clients import PolicyClient, running, sender_domains, server_config, smtpcbd
from tests.world import World

SMTP_VERBS = {"EHLO", "HELO", "STARTTLS", "VRFY", "MAIL", "RCPT", "RSET", "QUIT", "NOOP"}
OWN_SENDER = "verifier@pass.test"
FALLBACK_SENDER = "bounces@fail.test"

Start = Callable[..., AbstractAsyncContextManager[Daemon]]


@pytest_asyncio.fixture
async def farm(world: World) -> MXFarm:
    return await sender_domains(world)


@pytest.fixture
def start(world: World, farm: MXFarm) -> Start:
    def daemon(**sections: dict[str, Any]) -> AbstractAsyncContextManager[Daemon]:
        return running(server_config(world, farm, **sections))
    return daemon


def dialled(farm: MXFarm) -> int:
    return sum(server.connections for server in farm.servers.values())


@pytest.mark.parametrize("allowed", [[], ["127.0.0.9/32"]])
async def test_a_forbidden_target_is_never_dialled(world: World, farm: MXFarm,
                                                   allowed: list[str]) -> None:
    """Loopback is forbidden unless allowed: an MX there, listening on the callout port,
    gets no connection (and does get one once its network is allowed)."""
    world.dns.add_mx("trap.test", [(10, "mx.trap.test")])
    world.dns.add_a("mx.trap.test", "127.0.0.9")
    world.dns.add_mx("routed.test", [(10, "mx.pass.test")])
    sections: dict[str, Any] = {"security": {"allowed_target_networks": allowed},
                                "callout": {"routes": {"routed.test": ["127.0.0.9"]}}}
    async with ScriptedMX("127.0.0.9", farm.port, MXScript(
            rcpt_reply_default=Reply(250, "2.1.5 Ok"))) as trap, \
            running(server_config(world, farm, **sections)) as daemon:
        client = await PolicyClient.connect(daemon.addresses()["policy"])
        for sender in ("someone@trap.test", "someone@routed.test"):
            assert await client.ask(sender) == "DUNNO"
            line = await smtpcbd(daemon.addresses()["smtpcbd"], f"<{sender}>\n".encode())
            assert ("target_forbidden" in line) == (not allowed), line
        await client.close()
        assert trap.connections == (0 if not allowed else 2)
    assert dialled(farm) == 0  # the route, not the domain's own MX, is what counts


INJECTED_POLICY = [
    b"sender=alice@pass.test\rDATA\n",
    b"sender=alice@pass.test>\rRCPT TO:<evil@fail.test\n",
    b"sender=alice@pass.test\x00DATA\n",
    b"sender=<alice@pass.test> SIZE=1\n",
    b"sender=alice@pass.test\r\nDATA\n",
    b"sender=alice@pass.test\nrecipient=evil@fail.test>\rDATA\n",
    b"sender=\"a\rb\"@pass.test\n",
]
INJECTED_SMTPCBD = [
    b"<alice@pass.test\rDATA>\n",
    b"<alice@pass.test>\rDATA\n",
    b"<alice@pass.test> DATA\n",
    b"<alice@pass.test\x00>\n",
    b"<alice@pass.test>\r\nDATA\r\n",
    b"<alice@pass.test>RCPT TO:<evil@fail.test>\n",
]


@pytest.mark.parametrize("verify", ["sender", "recipient"])
async def test_injection_never_reaches_the_wire(start: Start, farm: MXFarm, verify: str
                                                ) -> None:
    async with start(policy={"verify": verify}) as daemon:
        client = await PolicyClient.connect(daemon.addresses()["policy"])
        for attributes in INJECTED_POLICY:
            if verify == "recipient":
                attributes = attributes.replace(b"sender=", b"recipient=")
            await client.send(b"request=smtpd_access_policy\nprotocol_state=RCPT\n"
                              + attributes + b"\n")
            await client.answer()
        await client.close()
        for line in INJECTED_SMTPCBD:
            await smtpcbd(daemon.addresses()["smtpcbd"], line)
    commands = [c for server in farm.servers.values() for c in server.commands]
    assert "RCPT TO:<alice@pass.test>" in commands  # the clean part of one request was asked
    for command in commands:
        assert command.split(" ", 1)[0].split(":", 1)[0].upper() in SMTP_VERBS, command
        assert "\r" not in command and "\x00" not in command and "evil" not in command, command
    for rcpt in (r for server in farm.servers.values() for r in server.rcpts):
        assert all(c not in rcpt for c in "<>\r\n\x00 \""), rcpt


async def test_the_null_sender_and_own_senders_are_never_verified(start: Start,
                                                                  farm: MXFarm) -> None:
    own = {"callout": {"mail_from": OWN_SENDER, "fallback_mail_from": FALLBACK_SENDER}}
    async with start(**own) as daemon:
        client = await PolicyClient.connect(daemon.addresses()["policy"])
        for sender in ("", OWN_SENDER, FALLBACK_SENDER, "VERIFIER@PASS.TEST"):
            assert await client.ask(sender) == "DUNNO", sender
        await client.close()
        for line in (b"<>\n", f"<{OWN_SENDER}>\n".encode(), f"<{FALLBACK_SENDER}>\n".encode()):
            answer = await smtpcbd(daemon.addresses()["smtpcbd"], line)
            assert answer.startswith("OK:"), answer
    assert dialled(farm) == 0

