"""Reload without dropping connections, graceful shutdown, and listeners that cannot open."""

from __future__ import annotations

import asyncio
import logging
import socket
import sys
from pathlib import Path

import pytest
import pytest_asyncio

from cbv import providers
from cbv.config import load_config
from cbv.servers.daemon import LOCK_WAIT, Daemon
from cbv.servers.event_loop import loop_name
from cbv.servers.listen import ListenError
from cbv.servers.logs import fields_of
from cbv.testing import MXFarm, MXScript
from tests.collector import count_never_due, cycle_freed
from tests.servers.clients import (
    DOMAINS,
    PolicyClient,
    policy_request,
    running,
    sender_domains,
    server_config,
    smtpcbd,
)
from tests.waiting import at_rcpt, until
from tests.world import World

SLOW = "someone@slow.test"  # its MX holds the RCPT reply back
SLOW_MX = DOMAINS["slow.test"][0]


@pytest_asyncio.fixture
async def farm(world: World) -> MXFarm:
    return await sender_domains(world)


def write_config(path: Path, world: World, farm: MXFarm, extra: str = "",
                 policy: str = "127.0.0.1:0") -> Path:
    path.write_text(world.toml(farm.port, "total_timeout = 5.0") + f"""
[cache]
url = "memory://"
[server]
policy = "{policy}"
smtpcbd = ""
{extra}
""")
    return path


async def test_reload_changes_policy_on_open_connections(
    world: World, farm: MXFarm, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="cbv")
    path = write_config(tmp_path / "cbv.toml", world, farm)
    daemon = Daemon(load_config(path), path, announce=lambda line: None)
    await daemon.start()
    try:
        address = daemon.addresses()["policy"]
        client = await PolicyClient.connect(address)
        assert (await client.ask("nobody@fail.test")).startswith("550 5.1.7")

        write_config(path, world, farm, '[policy]\ndry_run = true\n', policy=address)
        assert await daemon.reload()
        assert daemon.addresses()["policy"] == address, "same address: the listener is kept"
        assert (await client.ask("nobody@fail.test")).startswith("WARN cbv dry run")

        path.write_text(path.read_text() + "\n[policy.domains.bad]\nno_such_key = 1\n")
        assert not await daemon.reload()
        assert (await client.ask("nobody@fail.test")).startswith("WARN cbv dry run")
        refused = [r for r in caplog.records if r.getMessage().startswith("reload refused")]
        assert fields_of(refused[0])["error"] == (
            f"{path}: policy.domains.bad.no_such_key: unknown key")
        assert refused[0].levelno == logging.ERROR
        await client.close()
    finally:
        await daemon.shutdown()


async def test_reload_moves_a_listener_and_keeps_old_connections(
    world: World, farm: MXFarm, tmp_path: Path
) -> None:
    path = write_config(tmp_path / "cbv.toml", world, farm)
    daemon = Daemon(load_config(path), path, announce=lambda line: None)
    await daemon.start()
    try:
        old_address = daemon.addresses()["policy"]
        client = await PolicyClient.connect(old_address)
        assert await client.ask("alice@pass.test") == "DUNNO"
        socket_path = tmp_path / "policy.sock"
        write_config(path, world, farm, policy=f"unix:{socket_path}")
        assert await daemon.reload()
        assert daemon.addresses() == {"policy": f"unix:{socket_path}"}
        assert await client.ask("alice@pass.test") == "DUNNO", "old connection still served"
        with pytest.raises(ConnectionRefusedError):
            await PolicyClient.connect(old_address)
        moved = await PolicyClient.connect(f"unix:{socket_path}")
        assert (await moved.ask("nobody@fail.test")).startswith("550")
        await moved.close()
        await client.close()
    finally:
        await daemon.shutdown()


async def test_a_reload_that_cannot_listen_keeps_everything(
    world: World, farm: MXFarm, tmp_path: Path
) -> None:
    path = write_config(tmp_path / "cbv.toml", world, farm)
    daemon = Daemon(load_config(path), path, announce=lambda line: None)
    await daemon.start()
    blocker = socket.socket()
    blocker.bind(("127.0.0.1", 0))
    blocker.listen()
    try:
        before = daemon.addresses()
        write_config(path, world, farm, policy=f"127.0.0.1:{blocker.getsockname()[1]}")
        assert not await daemon.reload()
        assert daemon.addresses() == before
        client = await PolicyClient.connect(before["policy"])
        assert await client.ask("alice@pass.test") == "DUNNO"
        await client.close()
    finally:
        blocker.close()
        await daemon.shutdown()


async def test_shutdown_answers_what_is_in_flight_and_closes_idle_connections(
    world: World, farm: MXFarm
) -> None:
    config = server_config(world, farm)
    daemon = Daemon(config, announce=lambda line: None)
    await daemon.start()
    address = daemon.addresses()["policy"]
    busy = await PolicyClient.connect(address)
    idle = await PolicyClient.connect(address)
    assert await idle.ask("alice@pass.test") == "DUNNO"
    await busy.send(policy_request(SLOW))
    await until(lambda: at_rcpt(farm.servers[SLOW_MX]), "the callout is at RCPT")
    stopping = asyncio.create_task(daemon.shutdown())
    assert await idle.closed_by_server()
    assert (await busy.answer()).startswith("550 5.1.7 undeliverable address")
    assert await busy.closed_by_server()
    async with asyncio.timeout(10):
        await stopping
    with pytest.raises(ConnectionRefusedError):
        await PolicyClient.connect(address)


async def test_shutdown_is_bounded(world: World, farm: MXFarm) -> None:
    config = server_config(world, farm, server={"shutdown_timeout": 0.3})
    farm.servers[SLOW_MX].script = MXScript(delays={"rcpt": 60})  # outlasts the grace
    daemon = Daemon(config, announce=lambda line: None)
    await daemon.start()
    client = await PolicyClient.connect(daemon.addresses()["policy"])
    await client.send(policy_request(SLOW))
    await until(lambda: at_rcpt(farm.servers[SLOW_MX]), "the callout is at RCPT")
    loop = asyncio.get_running_loop()
    started = loop.time()
    await daemon.shutdown()
    assert loop.time() - started < 3
    assert await client.closed_by_server()


async def test_start_says_where_it_listens(world: World, farm: MXFarm) -> None:
    lines: list[str] = []
    daemon = Daemon(server_config(world, farm), announce=lines.append)
    await daemon.start()
    try:
        addresses = daemon.addresses()
        assert lines == [
            f"cbv: policy listening on {addresses['policy']} (Postfix check_policy_service)",
            f"cbv: smtpcbd listening on {addresses['smtpcbd']} "
            "(qpsmtpd smtp_callback, Exim readsocket)",
        ]
        answer = await smtpcbd(addresses["smtpcbd"], b"<nobody@fail.test>\n")
        assert answer.startswith("FAIL:")
    finally:
        await daemon.shutdown()


async def test_the_suffix_list_is_read_before_any_listener_opens(
        world: World, farm: MXFarm) -> None:
    """Not by the first callout, which would hold every session in flight meanwhile."""
    providers._suffixes.cache_clear()
    read_when_announced: list[int] = []
    daemon = Daemon(server_config(world, farm), announce=lambda line: read_when_announced.append(
        providers._suffixes.cache_info().currsize))
    await daemon.start()
    try:
        assert read_when_announced == [1, 1]
    finally:
        await daemon.shutdown()


async def test_the_running_daemon_collects_young_objects_on_its_clock(
        world: World, farm: MXFarm) -> None:
    """Not only when CPython's allocation count says: at 10,000 callouts in flight that
    count hardly moves while the young generation fills."""
    listening = asyncio.Event()
    daemon = Daemon(server_config(world, farm), announce=lambda line: listening.set())
    running = asyncio.create_task(daemon.run())
    await listening.wait()
    try:
        with count_never_due():
            freed = cycle_freed()
            async with asyncio.timeout(5):
                await freed.wait()
    finally:
        daemon.stop()
        await running


async def test_on_uvloop_a_thread_waits_less_for_the_interpreter_lock(
        world: World, farm: MXFarm) -> None:
    """While the daemon runs on uvloop, the log's writer thread gets the lock within
    `LOCK_WAIT` of asking; on asyncio, and once the daemon is done, the interval is
    Python's own."""
    before = sys.getswitchinterval()
    assert before != LOCK_WAIT
    listening = asyncio.Event()
    daemon = Daemon(server_config(world, farm), announce=lambda line: listening.set())
    running = asyncio.create_task(daemon.run())
    await listening.wait()
    on_uvloop = loop_name(asyncio.get_running_loop()) == "uvloop"
    assert sys.getswitchinterval() == (LOCK_WAIT if on_uvloop else before)
    daemon.stop()
    await running
    assert sys.getswitchinterval() == before


async def test_a_taken_port_is_one_clear_error(world: World, farm: MXFarm) -> None:
    blocker = socket.socket()
    blocker.bind(("127.0.0.1", 0))
    blocker.listen()
    port = blocker.getsockname()[1]
    daemon = Daemon(server_config(world, farm, server={"smtpcbd": f"127.0.0.1:{port}"}),
                    announce=lambda line: None)
    try:
        with pytest.raises(ListenError) as raised:
            await daemon.start()
    finally:
        blocker.close()
    assert str(raised.value) == (
        f"smtpcbd listener: cannot listen on 127.0.0.1:{port}: Address already in use")


async def test_stale_unix_sockets_are_replaced_but_nothing_else(
    world: World, farm: MXFarm, tmp_path: Path
) -> None:
    stale = tmp_path / "stale.sock"
    leftover = socket.socket(socket.AF_UNIX)
    leftover.bind(str(stale))
    leftover.close()
    async with running(server_config(world, farm, server={"policy": f"unix:{stale}",
                                                          "smtpcbd": ""})) as daemon:
        client = await PolicyClient.connect(daemon.addresses()["policy"])
        assert await client.ask("alice@pass.test") == "DUNNO"
        await client.close()
        twice = Daemon(server_config(world, farm, server={"policy": f"unix:{stale}",
                                                          "smtpcbd": ""}))
        with pytest.raises(ListenError, match="another process is listening there"):
            await twice.start()
    regular = tmp_path / "regular"
    regular.write_text("keep me")
    with pytest.raises(ListenError, match="a file that is not a socket is there"):
        await Daemon(server_config(world, farm, server={"policy": f"unix:{regular}",
                                                        "smtpcbd": ""})).start()
    assert regular.read_text() == "keep me"
