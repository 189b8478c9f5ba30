"""poll_until: stops at the first accepted answer, else gives the last one when time is up."""

from __future__ import annotations

from cbv.engine.polling import poll_until


async def test_stops_at_the_first_accepted_answer() -> None:
    answers = iter([False, False, True, False])
    asked = 0

    async def check() -> bool:
        nonlocal asked
        asked += 1
        return next(answers)

    assert await poll_until(check, bool, within=60) is True
    assert asked == 3


async def test_gives_the_last_answer_when_time_is_up() -> None:
    asked = 0

    async def check() -> int:
        nonlocal asked
        asked += 1
        return asked

    assert await poll_until(check, lambda _: False, within=0) == 1
    last = await poll_until(check, lambda _: False, within=0.05)
    assert last == asked > 2
