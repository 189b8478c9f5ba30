"""The Postfix policy listener, in process, against fake DNS and scripted MX hosts."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from cbv.policy import RequestContext
from cbv.servers.daemon import Daemon
from cbv.servers.logs import fields_of
from cbv.servers.runtime import Answered, Generation, Verifying
from cbv.testing import MXFarm
from tests.servers.clients import (
    PolicyClient,
    policy_request,
    running,
    sender_domains,
    server_config,
)
from tests.waiting import at_rcpt, until
from tests.world import World

USER_UNKNOWN = "550 5.1.1 <nobody@fail.test>: Recipient address rejected: User unknown in " \
               "local recipient table"


@pytest_asyncio.fixture
async def farm(world: World) -> MXFarm:
    return await sender_domains(world)


@pytest_asyncio.fixture
async def client_of(world: World, farm: MXFarm) -> AsyncIterator[Any]:
    """Starts a daemon with the given config sections and connects a client to it."""
    daemons: list[Any] = []
    clients: list[PolicyClient] = []

    async def connect(**sections: dict[str, Any]) -> tuple[PolicyClient, Daemon]:
        context = running(server_config(world, farm, **sections))
        daemon = await context.__aenter__()
        daemons.append(context)
        client = await PolicyClient.connect(daemon.addresses()["policy"])
        clients.append(client)
        return client, daemon

    yield connect
    for client in clients:
        client.writer.close()
    for context in reversed(daemons):
        await context.__aexit__(None, None, None)


def decisions(caplog: pytest.LogCaptureFixture) -> list[dict[str, object]]:
    return [fields_of(r) for r in caplog.records if r.name == "cbv.decision"]


async def test_each_verdict_gets_the_postfix_answer(client_of: Any, world: World) -> None:
    client, _ = await client_of()
    assert await client.ask("alice@pass.test") == "DUNNO"
    assert await client.ask("nobody@fail.test") == (
        "550 5.1.7 undeliverable address (mailbox_unknown; mx.fail.test said: "
        f"{USER_UNKNOWN})"
    )
    greylisted = await client.ask("someone@grey.test")
    assert greylisted.startswith("DEFER_IF_PERMIT 4.1.7 unverified address (greylisted; ")
    assert await client.ask("someone@policy.test") == "DUNNO"  # 5.7.1 says nothing of the address
    assert await client.ask("bad address") == (
        "550 5.1.7 undeliverable address (bad_syntax; address has no '@')"
    )


async def test_one_log_line_per_decision(client_of: Any, caplog: pytest.LogCaptureFixture
                                         ) -> None:
    caplog.set_level(logging.INFO, logger="cbv")
    client, _ = await client_of()
    await client.ask("nobody@fail.test", instance="abc.1")
    await client.ask("", instance="abc.2")
    await client.send(policy_request("alice@pass.test", state="CONNECT"))
    assert await client.answer() == "DUNNO"
    fail, null = decisions(caplog)
    assert {k: fail[k] for k in ("listener", "address", "result", "reason", "action", "cached",
                                 "mx", "instance", "recipient", "client")} == {
        "listener": "policy", "address": "nobody@fail.test", "result": "fail",
        "reason": "mailbox_unknown", "action": "reject", "cached": False, "mx": "mx.fail.test",
        "instance": "abc.1", "recipient": "bob@example.test", "client": "192.0.2.7",
    }
    assert isinstance(fail["duration_ms"], float)
    assert str(fail["answer"]).startswith("550 5.1.7")
    assert (null["result"], null["reason"], null["action"]) == ("excluded", "null sender",
                                                                "accept")


async def test_without_decision_lines_the_decisions_are_still_counted(
        client_of: Any, caplog: pytest.LogCaptureFixture) -> None:
    """`[log] level = "warning"` (docs/operations.md, "Resources") spares the decision line,
    not the count in /metrics."""
    caplog.set_level(logging.WARNING, logger="cbv")
    client, daemon = await client_of()
    for _ in range(2):  # the callout, then the cache
        assert await client.ask("nobody@fail.test") != "DUNNO"
    assert decisions(caplog) == []
    assert ('cbv_decisions_total{action="reject",listener="policy",result="fail",would=""} '
            '2.0') in daemon.telemetry.exposition().decode()


async def test_the_second_ask_comes_from_the_cache(client_of: Any, world: World,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="cbv")
    client, _ = await client_of()
    first = await client.ask("nobody@fail.test")
    assert await client.ask("nobody@fail.test") == first
    assert world.server("127.0.0.3").connections == 1
    assert [d["cached"] for d in decisions(caplog)] == [False, True]


async def test_exclusions_answer_dunno_without_a_callout(client_of: Any, world: World) -> None:
    client, _ = await client_of(policy={"allowlist": ["fail.test"]})
    assert await client.ask("") == "DUNNO"
    assert await client.ask("nobody@fail.test") == "DUNNO"
    assert await client.ask("someone@grey.test", sasl_username="alice") == "DUNNO"
    assert await client.ask("someone@grey.test", client_address="127.0.0.1") == "DUNNO"
    assert await client.ask("postmaster@verifier.cbv.test") == "DUNNO"
    assert world.server("127.0.0.3").connections == 0
    assert world.server("127.0.0.4").connections == 0


async def test_actions_hold_prepend_and_warn(client_of: Any) -> None:
    client, _ = await client_of(policy={
        "on_fail": "quarantine", "add_header": True,
        "domains": {"lenient.test": {"on_fail": "accept", "score": 3},
                    "trial.test": {"dry_run": True}},
    })
    assert (await client.ask("nobody@fail.test")).startswith(
        "HOLD cbv: undeliverable address (mailbox_unknown;")
    assert await client.ask("nobody@fail.test", "bob@lenient.test") == (
        "PREPEND X-CBV-Result: fail reason=mailbox_unknown address=nobody@fail.test "
        "mx=mx.fail.test score=3"
    )
    assert await client.ask("alice@pass.test") == (
        "PREPEND X-CBV-Result: pass reason=accepted address=alice@pass.test mx=mx.pass.test"
    )
    assert (await client.ask("nobody@fail.test", "bob@trial.test")).startswith(
        "WARN cbv dry run: would quarantine <nobody@fail.test>: cbv: undeliverable address")
    assert await client.ask("alice@pass.test", "bob@trial.test") == "DUNNO"


async def test_rcptto_phase_waits_for_the_recipient(client_of: Any, world: World) -> None:
    client, _ = await client_of(policy={"phase": "rcptto"})
    assert await client.ask("nobody@fail.test", "", state="MAIL") == "DUNNO"
    assert world.server("127.0.0.3").connections == 0
    assert (await client.ask("nobody@fail.test")).startswith("550 5.1.7")


async def test_many_requests_pipelined_in_one_write(client_of: Any) -> None:
    client, _ = await client_of()
    senders = ["alice@pass.test", "nobody@fail.test", "", "alice@pass.test"] * 5
    await client.send(b"".join(policy_request(s) for s in senders))
    answers = [await client.answer() for _ in senders]
    assert [a.split(" ")[0] for a in answers] == ["DUNNO", "550", "DUNNO", "DUNNO"] * 5


async def test_a_request_dribbled_byte_by_byte(client_of: Any) -> None:
    client, _ = await client_of()
    for byte in policy_request("nobody@fail.test"):
        await client.send(bytes([byte]))
    assert (await client.answer()).startswith("550 5.1.7")


async def test_one_callout_per_message_even_when_nothing_is_cached(client_of: Any, world: World
                                                                   ) -> None:
    client, _ = await client_of(cache={"fail_ttl": 0})
    for recipient in ("a@example.test", "b@example.test", "c@example.test"):
        assert (await client.ask("nobody@fail.test", recipient, instance="m1")).startswith("550")
    assert world.server("127.0.0.3").connections == 1
    assert (await client.ask("nobody@fail.test", instance="m2")).startswith("550")
    assert world.server("127.0.0.3").connections == 2


async def test_concurrent_recipients_of_one_message_share_the_callout(
    client_of: Any, world: World
) -> None:
    first, daemon = await client_of()
    others = [await PolicyClient.connect(daemon.addresses()["policy"]) for _ in range(3)]
    try:
        answers = await asyncio.gather(*(
            c.ask("someone@slow.test", f"r{n}@example.test", instance="same")
            for n, c in enumerate([first, *others])
        ))
    finally:
        for other in others:
            await other.close()
    assert len(set(answers)) == 1
    assert world.server("127.0.0.6").connections == 1


async def test_a_slow_callout_is_in_progress_then_answered_from_the_cache(
    client_of: Any, world: World
) -> None:
    client, daemon = await client_of(server={"answer_within": 0.2})
    assert await client.ask("someone@slow.test") == (
        "DEFER_IF_PERMIT 4.1.7 unverified address: address verification in progress"
    )
    async with asyncio.timeout(10):
        await daemon.runtime.generation.settle()
    retry = await client.ask("someone@slow.test")
    assert retry.startswith("550 5.1.7 undeliverable address (mailbox_unknown; mx.slow.test")
    assert world.server("127.0.0.6").connections == 1


async def test_in_progress_with_transient_accepted_is_dunno(client_of: Any) -> None:
    client, _ = await client_of(server={"answer_within": 0.2},
                                policy={"on_transient": "accept"})
    assert await client.ask("someone@slow.test") == "DUNNO"


async def test_internal_errors_fail_open_or_closed(client_of: Any,
                                                   monkeypatch: pytest.MonkeyPatch,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    async def broken(address: str, **kwargs: object) -> None:
        raise RuntimeError("disk on fire")

    opened, open_daemon = await client_of()
    closed, closed_daemon = await client_of(server={"fail_open": False})
    for daemon in (open_daemon, closed_daemon):
        monkeypatch.setattr(daemon.runtime.generation.verifier, "verify", broken)
    assert await opened.ask("nobody@fail.test") == "DUNNO"
    assert await closed.ask("nobody@fail.test") == (
        "451 4.3.0 address verification failed: internal error"
    )
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert errors
    assert fields_of(errors[0])["error"] == "RuntimeError: disk on fire"
    assert await opened.ask("alice@pass.test") == "DUNNO"


async def test_bad_input_gets_an_answer_and_the_listener_lives_on(
    client_of: Any, caplog: pytest.LogCaptureFixture
) -> None:
    client, daemon = await client_of()
    await client.send(b"this is not a policy request\n\n")
    assert await client.answer() == "DUNNO"
    await client.send(b"request=smtpd_access_policy\nccert_subject=" + b"x" * 100_000 + b"\n\n")
    assert await client.answer() == "DUNNO"
    await client.send(b"request=something_else\n\n")
    assert await client.answer() == "DUNNO"
    await client.send(b"sender=\xff\xfe\n\n")
    assert await client.answer() == "DUNNO"
    assert (await client.ask("nobody@fail.test")).startswith("550")
    warnings = [fields_of(r)["reason"] for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [
        "not a name=value line: 'this is not a policy request'",
        "line longer than 8192 bytes",
        "unknown request type 'something_else'",
        "request is not UTF-8",
    ]
    fresh = await PolicyClient.connect(daemon.addresses()["policy"])
    assert await fresh.ask("alice@pass.test") == "DUNNO"
    await fresh.close()


async def test_a_client_that_vanishes_mid_callout_harms_nothing(
    client_of: Any, world: World
) -> None:
    client, daemon = await client_of()
    await client.send(policy_request("someone@slow.test"))
    slow = world.server("127.0.0.6")
    await until(lambda: at_rcpt(slow), "the callout is at RCPT")
    client.writer.transport.abort()
    async with asyncio.timeout(10):
        await daemon.runtime.generation.settle()
    again = await PolicyClient.connect(daemon.addresses()["policy"])
    assert (await again.ask("someone@slow.test")).startswith("550 5.1.7")
    assert slow.connections == 1
    await again.close()


async def test_idle_connections_are_closed(client_of: Any) -> None:
    client, daemon = await client_of(server={"idle_timeout": 0.4})
    assert await client.ask("alice@pass.test") == "DUNNO"
    assert await client.closed_by_server()
    assert daemon.connections == 0


async def test_a_unix_socket_listener(world: World, farm: MXFarm, tmp_path: Any) -> None:
    path = tmp_path / "policy.sock"
    config = server_config(world, farm, server={"policy": f"unix:{path}", "smtpcbd": ""})
    async with running(config) as daemon:
        assert daemon.addresses() == {"policy": f"unix:{path}"}
        client = await PolicyClient.connect(f"unix:{path}")
        assert (await client.ask("nobody@fail.test")).startswith("550")
        await client.close()
    assert not path.exists()


async def test_a_failed_callout_fails_its_whole_message_and_is_logged_once(
    client_of: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    first, daemon = await client_of(server={"fail_open": False})
    second = await PolicyClient.connect(daemon.addresses()["policy"])
    generation: Generation = daemon.runtime.generation
    begun: list[RequestContext] = []
    begin = generation.begin

    def counted(context: RequestContext, message_id: str = "") -> Answered | Verifying:
        begun.append(context)
        return begin(context, message_id)

    async def broken(address: str, **kwargs: object) -> None:
        # Both requests are begun (the second, at once, joins this callout), then it fails.
        await until(lambda: len(begun) == 2, "both requests reached the daemon")
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(generation, "begin", counted)
    monkeypatch.setattr(generation.verifier, "verify", broken)
    answers = await asyncio.gather(
        first.ask("nobody@fail.test", "a@example.test", instance="doomed"),
        second.ask("nobody@fail.test", "b@example.test", instance="doomed"),
    )
    await second.close()
    assert list(answers) == ["451 4.3.0 address verification failed: internal error"] * 2
    assert len([r for r in caplog.records if r.levelno == logging.ERROR]) == 1


async def test_a_quoted_local_part_is_verified_as_it_was_sent(client_of: Any, world: World
                                                              ) -> None:
    client, _ = await client_of()
    answer = await client.ask("john doe@fail.test")  # Postfix's internal form of the address
    assert answer.startswith("550 5.1.7 undeliverable address (mailbox_unknown;")
    assert world.server("127.0.0.3").rcpts[-1] == '"john doe"@fail.test'
