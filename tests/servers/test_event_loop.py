"""`[server] event_loop`: which loop `cbv serve` runs on, and a clear error when the one
asked for is not installed."""

from __future__ import annotations

import asyncio
import logging
import selectors
import socket
import sys
from collections import Counter
from collections.abc import Iterator

import pytest
import uvloop

from cbv.config import ConfigError
from cbv.servers.event_loop import (
    READY_PER_TURN,
    BoundedEpollSelector,
    loop_factory,
    loop_name,
    new_asyncio_loop,
)
from tests.servers.clients import PolicyClient, running, sender_domains, server_config
from tests.world import World


def test_auto_takes_uvloop_when_it_is_installed() -> None:
    assert loop_factory("auto") is uvloop.new_event_loop
    assert loop_factory("uvloop") is uvloop.new_event_loop
    assert loop_factory("asyncio") is new_asyncio_loop


def test_without_uvloop_auto_falls_back_and_uvloop_is_one_clear_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "uvloop", None)  # import uvloop now fails
    assert loop_factory("auto") is new_asyncio_loop
    with pytest.raises(ConfigError) as error:
        loop_factory("uvloop")
    assert str(error.value) == ("[server] event_loop = \"uvloop\", but uvloop is not installed "
                                "(pip install 'cbv[speed]')")


def test_loop_names() -> None:
    for factory, name in ((new_asyncio_loop, "asyncio"), (uvloop.new_event_loop, "uvloop")):
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


@pytest.fixture
def readable_pairs() -> Iterator[list[tuple[socket.socket, socket.socket]]]:
    """More connected socket pairs than one turn takes, each with a byte waiting."""
    pairs = [socket.socketpair() for _ in range(READY_PER_TURN + 44)]
    try:
        for writer, _ in pairs:
            writer.send(b"x")
        yield pairs
    finally:
        for writer, reader in pairs:
            writer.close()
            reader.close()


def test_the_selector_hands_over_a_turn_of_ready_sockets_and_the_rest_next(
    readable_pairs: list[tuple[socket.socket, socket.socket]],
) -> None:
    with BoundedEpollSelector() as selector:
        for _, reader in readable_pairs:
            selector.register(reader, selectors.EVENT_READ)
        first = selector.select(0)
        second = selector.select(0)  # nothing read: all are still ready
    assert len(first) == READY_PER_TURN
    assert {key.fileobj for key, _ in first + second} == {r for _, r in readable_pairs}
    assert {events for _, events in first + second} == {selectors.EVENT_READ}


def test_a_turn_of_the_daemons_asyncio_loop_reads_a_bounded_number_of_sockets(
    readable_pairs: list[tuple[socket.socket, socket.socket]],
) -> None:
    loop = new_asyncio_loop()
    turn = 0
    reads_by_turn: Counter[int] = Counter()

    def next_turn() -> None:
        nonlocal turn
        turn += 1
        loop.call_soon(next_turn)

    def read(reader: socket.socket) -> None:
        reader.recv(1)
        loop.remove_reader(reader)
        reads_by_turn[turn] += 1
        if sum(reads_by_turn.values()) == len(readable_pairs):
            loop.stop()

    try:
        for _, reader in readable_pairs:
            loop.add_reader(reader, read, reader)
        loop.call_soon(next_turn)
        loop.run_forever()
    finally:
        loop.close()
    assert sorted(reads_by_turn.values(), reverse=True) == [READY_PER_TURN, 44]
