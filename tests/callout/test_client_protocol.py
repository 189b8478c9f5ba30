"""The session's asyncio Protocol, the SOCKS5 hand-over and the pacer, without sockets:
bytes are handed in as a transport would, and a recording transport stands in for one."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from cbv.callout.client_protocol import UNASKED_REPLIES, SmtpClientProtocol
from cbv.callout.pacer import TurnPacer
from cbv.callout.socks_connector import Socks5Negotiation
from cbv.egress.settings import ProxyAddress
from cbv.protocol.smtp import ReplyError
from cbv.protocol.socks5 import Socks5Handshake

BANNER = b"220 mx.example.test ESMTP\r\n"
SUCCEEDED_V4 = b"\x05\x00\x00\x01\x7f\x00\x00\x01\x04\x38"


class RecordingTransport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.written: list[bytes] = []
        self.paused = False
        self.protocol: asyncio.BaseProtocol | None = None

    def write(self, data: Any) -> None:
        self.written.append(bytes(data))

    def pause_reading(self) -> None:
        self.paused = True

    def resume_reading(self) -> None:
        self.paused = False

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self.protocol = protocol


def connected(protocol: asyncio.Protocol) -> RecordingTransport:
    transport = RecordingTransport()
    protocol.connection_made(transport)
    return transport


async def test_a_reply_split_anywhere_wakes_the_session_once_it_is_whole() -> None:
    connection = SmtpClientProtocol(max_reply_bytes=4096)
    connected(connection)
    arrival = connection.arrival()
    connection.data_received(b"250-mx.example.test\r\n250 PIPE")
    assert not arrival.done()
    connection.data_received(b"LINING\r\n")
    await arrival
    reply = connection.take()
    assert (reply.code, reply.lines) == (250, ("mx.example.test", "PIPELINING"))


async def test_replies_come_out_in_order_before_the_end_of_the_connection() -> None:
    connection = SmtpClientProtocol(max_reply_bytes=4096)
    connected(connection)
    connection.data_received(b"250 2.1.0 Ok\r\n550 5.1.1 unknown\r\n")
    connection.eof_received()
    assert connection.has_reply
    assert [connection.take().code, connection.take().code] == [250, 550]
    with pytest.raises(ConnectionResetError, match="closed by the server"):
        connection.take()


async def test_a_lost_connection_wakes_the_waiting_session() -> None:
    connection = SmtpClientProtocol(max_reply_bytes=4096)
    connected(connection)
    arrival = connection.arrival()
    connection.connection_lost(ConnectionAbortedError("reset"))
    await arrival
    with pytest.raises(ConnectionAbortedError):
        connection.take()


async def test_garbage_after_good_replies_surfaces_after_them() -> None:
    connection = SmtpClientProtocol(max_reply_bytes=4096)
    connected(connection)
    connection.data_received(b"250 Ok\r\nHELLO\r\n")
    assert connection.take().code == 250
    assert connection.pending  # what STARTTLS must refuse to upgrade over
    connection.data_received(b"more\r\n")
    with pytest.raises(ReplyError):
        connection.take()


async def test_a_server_running_far_ahead_is_not_read_until_the_session_catches_up() -> None:
    connection = SmtpClientProtocol(max_reply_bytes=4096)
    transport = connected(connection)
    connection.data_received(b"250 Ok\r\n" * (UNASKED_REPLIES + 10))
    assert transport.paused
    for _ in range(10):
        connection.take()
    assert not transport.paused


async def test_socks5_hands_the_connection_over_with_the_bytes_past_the_handshake() -> None:
    session = SmtpClientProtocol(max_reply_bytes=4096)
    negotiation = Socks5Negotiation(Socks5Handshake(ProxyAddress("127.0.0.1", 1080), "192.0.2.25",
                                               25), session)
    transport = connected(negotiation)
    negotiation.data_received(b"\x05\x00")
    await negotiation.authenticated
    negotiation.data_received(SUCCEEDED_V4 + BANNER)  # the greeting in the same segment
    await negotiation.tunnelled
    assert transport.protocol is session
    assert session.take().code == 220


async def test_the_pacer_lets_a_wave_go_on_a_few_per_turn_in_order() -> None:
    pacer = TurnPacer(per_turn=2)
    loop = asyncio.get_running_loop()
    assert pacer.admit() is None and pacer.admit() is None
    waiters = [loop.create_future() for _ in range(5)]
    for waiter in waiters:
        pacer.wake(waiter)
    waiters[1].cancel()  # a session that timed out meanwhile takes no room
    done_by_turn = []
    for _ in range(3):
        await asyncio.sleep(0)
        done_by_turn.append([w.done() and not w.cancelled() for w in waiters])
    assert done_by_turn == [
        [True, False, True, False, False],
        [True, False, True, True, True],
        [True, False, True, True, True],
    ]


async def test_a_turn_with_room_admits_without_asking_for_the_loop(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """On Python 3.11 asking for the running loop is a system call."""
    pacer = TurnPacer(per_turn=3)
    running = asyncio.get_running_loop
    asked: list[asyncio.AbstractEventLoop] = []

    def counted() -> asyncio.AbstractEventLoop:
        asked.append(running())
        return asked[-1]

    monkeypatch.setattr(asyncio, "get_running_loop", counted)
    assert [pacer.admit() for _ in range(3)] == [None, None, None]
    assert len(asked) == 1  # the first, which schedules the turn
    waiter = pacer.admit()  # the turn is full: a future, made by the loop
    assert waiter is not None and len(asked) == 2
    await waiter
    assert pacer.admit() is None


def test_a_pacer_that_outlives_its_event_loop_starts_afresh_in_the_next() -> None:
    pacer = TurnPacer(per_turn=1)

    async def fill_the_turn() -> None:
        assert pacer.admit() is None
        for _ in range(100):  # more turns queued than the loop's shutdown runs
            assert pacer.admit() is not None

    async def admitted_at_once() -> bool:
        return pacer.admit() is None

    asyncio.run(fill_the_turn())
    assert asyncio.run(admitted_at_once())
