"""`[server] event_loop`: which loop `cbv serve` runs on, and a clear error when the one
asked for is not installed."""

from __future__ import annotations

import asyncio
import logging
import sys

import pytest
import uvloop

from cbv.config import ConfigError
from cbv.servers.event_loop import loop_factory, loop_name
from tests.servers.clients import PolicyClient, running, sender_domains, server_config
from tests.world import World


def test_auto_takes_uvloop_when_it_is_installed() -> None:
    assert loop_factory("auto") is uvloop.new_event_loop
    assert loop_factory("uvloop") is uvloop.new_event_loop
    assert loop_factory("asyncio") is asyncio.new_event_loop


def test_without_uvloop_auto_falls_back_and_uvloop_is_one_clear_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "uvloop", None)  # import uvloop now fails
    assert loop_factory("auto") is asyncio.new_event_loop
    with pytest.raises(ConfigError) as error:
        loop_factory("uvloop")
    assert str(error.value) == ("[server] event_loop = \"uvloop\", but uvloop is not installed "
                                "(pip install 'cbv[speed]')")


def test_loop_names() -> None:
    for factory, name in ((asyncio.new_event_loop, "asyncio"), (uvloop.new_event_loop, "uvloop")):
        loop = factory()
        try:
            assert loop_name(loop) == name
        finally:
            loop.close()


async def test_the_daemon_says_which_loop_it_runs_on_and_answers_on_it(
    world: World, caplog: pytest.LogCaptureFixture,
) -> None:
    farm = await sender_domains(world)
    with caplog.at_level(logging.INFO, logger="cbv.daemon"):
        async with running(server_config(world, farm)) as daemon:
            client = await PolicyClient.connect(daemon.addresses()["policy"])
            assert await client.ask("alice@pass.test") == "DUNNO"
            await client.close()
    [started] = [r for r in caplog.records if r.getMessage() == "started"]
    assert started.cbv_fields["event_loop"] == loop_name(asyncio.get_running_loop())  # type: ignore[attr-defined]
