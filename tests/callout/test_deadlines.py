"""Deadlines: every session's stage timer in one heap, behind one asyncio timer."""

from __future__ import annotations

import asyncio
from collections import Counter
from functools import partial

import pytest

from cbv.callout.deadlines import FIRED_PER_TURN, GRID, SWEEP_ABOVE, Deadlines, deadlines_of
from tests.callout.loop_timers import counting_call_at


async def test_callbacks_are_called_in_due_order_after_their_due_time() -> None:
    loop = asyncio.get_running_loop()
    called: list[tuple[str, float]] = []
    done: asyncio.Future[None] = loop.create_future()
    heap = Deadlines(loop)
    now = loop.time()

    def calling(name: str, due: float) -> None:
        heap.arm(due, lambda: called.append((name, loop.time() - due)))

    for name, after in (("third", 0.03), ("first", 0.01), ("second", 0.02)):
        calling(name, now + after)
    heap.arm(now + 0.04, lambda: done.set_result(None))
    await done
    assert [name for name, _ in called] == ["first", "second", "third"]
    assert all(0 <= late <= GRID + 0.05 for _, late in called)
    assert len(heap) == 0


async def test_dues_that_fall_together_are_called_a_turn_s_worth_at_a_time() -> None:
    """Sessions that came in together time out together; woken all in one turn, they held
    the loop for it."""
    loop = asyncio.get_running_loop()
    heap = Deadlines(loop)
    turn = 0
    called_in_turn: Counter[int] = Counter()
    order: list[int] = []
    done: asyncio.Future[None] = loop.create_future()
    count = 3 * FIRED_PER_TURN + 5

    def next_turn() -> None:
        nonlocal turn
        turn += 1
        if not done.done():
            loop.call_soon(next_turn)

    def calling(index: int) -> None:
        called_in_turn[turn] += 1
        order.append(index)
        if len(order) == count:
            done.set_result(None)

    now = loop.time()
    for index in range(count):
        heap.arm(now + 0.001 + index / 1e6, partial(calling, index))
    loop.call_soon(next_turn)
    await done
    assert sorted(called_in_turn.values(), reverse=True) == [FIRED_PER_TURN] * 3 + [5]
    assert order == list(range(count))
    assert len(heap) == 0


async def test_a_thousand_sessions_share_one_asyncio_timer(
        monkeypatch: pytest.MonkeyPatch) -> None:
    loop = asyncio.get_running_loop()
    armed = counting_call_at(monkeypatch, loop)
    heap = Deadlines(loop)
    now = loop.time()
    numbers = [heap.arm(now + 30.0 + i / 1000, lambda: None) for i in range(1000)]
    assert len(armed) == 1
    for number in numbers:
        heap.disarm(number)
    assert len(heap) == 0


async def test_a_callback_taken_out_is_never_called() -> None:
    loop = asyncio.get_running_loop()
    heap = Deadlines(loop)
    called: list[str] = []
    done: asyncio.Future[None] = loop.create_future()
    now = loop.time()
    taken_out = heap.arm(now + 0.01, lambda: called.append("taken out"))
    heap.arm(now + 0.02, lambda: called.append("kept"))
    heap.arm(now + 0.03, lambda: done.set_result(None))
    heap.disarm(taken_out)
    heap.disarm(taken_out)  # twice: nothing more happens
    await done
    assert called == ["kept"]


async def test_entries_left_behind_are_swept_out_not_kept_until_due() -> None:
    """Sessions end long before their time limits: a heap of what they left behind would
    grow with the rate of callouts times the time limit."""
    loop = asyncio.get_running_loop()
    heap = Deadlines(loop)
    now = loop.time()
    for i in range(20 * SWEEP_ABOVE):
        heap.disarm(heap.arm(now + 30.0 + i / 1000, lambda: None))
    live = [heap.arm(now + 60.0, lambda: None) for _ in range(10)]
    assert len(heap) == len(live)
    assert len(heap._heap) <= 2 * SWEEP_ABOVE + len(live)


async def test_each_loop_has_its_own_and_the_last_is_kept() -> None:
    loop = asyncio.get_running_loop()
    assert deadlines_of(loop) is deadlines_of(loop)
    other = asyncio.new_event_loop()
    try:
        theirs = deadlines_of(other)
        assert theirs.loop is other and deadlines_of(loop).loop is loop
    finally:
        other.close()
