"""StageTimer: a session's stage time limits as asyncio.timeout's, with one timer."""

from __future__ import annotations

import asyncio

import pytest

from cbv.callout.stage_timer import StageTimer
from tests.callout.loop_timers import counting_call_at


async def test_a_stage_past_its_time_raises_timeout_and_leaves_the_task_uncancelled() -> None:
    never: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    timer = StageTimer()
    with pytest.raises(TimeoutError), timer.stage(0.01):
        await never
    task = asyncio.current_task()
    assert task is not None and task.cancelling() == 0
    timer.close()


async def test_stages_due_ever_later_arm_one_timer(monkeypatch: pytest.MonkeyPatch) -> None:
    armed = counting_call_at(monkeypatch, asyncio.get_running_loop())
    timer = StageTimer()
    for _ in range(10):
        with timer.stage(30.0):
            await asyncio.sleep(0)  # a reply that is already there
    assert len(armed) == 1
    with timer.stage(1.0):  # due sooner than the timer: armed again for it
        await asyncio.sleep(0)
    assert len(armed) == 2
    timer.close()


async def test_a_timer_that_fires_before_the_stage_is_due_rearms_instead_of_cutting() -> None:
    loop = asyncio.get_running_loop()
    timer = StageTimer()
    with timer.stage(0.0):  # armed for now; this stage ends before it fires
        pass
    passed_first_due: asyncio.Future[None] = loop.create_future()
    loop.call_later(0.01, passed_first_due.set_result, None)  # after the timer has fired
    with timer.stage(30.0):
        await passed_first_due
    timer.close()


async def test_a_cancellation_from_elsewhere_stays_a_cancellation() -> None:
    loop = asyncio.get_running_loop()
    entered = asyncio.Event()

    async def session() -> None:
        timer = StageTimer()
        try:
            with timer.stage(30.0):
                entered.set()
                await loop.create_future()
        finally:
            timer.close()

    task = loop.create_task(session())
    await entered.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_outside_a_task_it_refuses() -> None:
    loop = asyncio.get_running_loop()
    refused: asyncio.Future[BaseException] = loop.create_future()

    def in_a_callback() -> None:
        try:
            StageTimer()
        except RuntimeError as exc:
            refused.set_result(exc)

    loop.call_soon(in_a_callback)
    assert "inside a task" in str(await refused)
