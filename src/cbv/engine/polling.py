"""Waiting on a condition only another process can change (a Redis lock, a shared slot)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

FIRST_PAUSE = 0.005
LONGEST_PAUSE = 0.1
T = TypeVar("T")


async def poll_until(check: Callable[[], Awaitable[T]], done: Callable[[T], bool],
                     within: float) -> T:
    """Ask `check` until `done` accepts its answer or `within` seconds have passed, and
    return the last answer. The pauses start short (a lock is usually freed soon) and grow
    by half each time up to a tenth of a second, so a long wait costs few round trips."""
    deadline = time.monotonic() + within
    pause = FIRST_PAUSE
    while True:
        answer = await check()
        left = deadline - time.monotonic()
        if done(answer) or left <= 0:
            return answer
        await asyncio.sleep(min(pause, left))
        pause = min(pause * 1.5, LONGEST_PAUSE)
