"""The due times of every session's stage timer on one event loop, kept in one heap.

asyncio keeps its timers in a heap ordered by `TimerHandle.__lt__`, a method in Python:
with a thousand sessions in flight, each timer armed and taken out again cost a callout
about 22 calls of it, and the stage timers 2.8% of a callout's instructions (`python -m
bench instructions`). Here the heap holds (due, number) tuples, which C compares, and one
asyncio timer is armed for the earliest due time, rounded up to a grid of `GRID` seconds
so that the dues of a burst of sessions come due together.

A timer taken out leaves its entry behind (no search of the heap); the entry is dropped
when it comes due, or swept out once such entries outnumber the armed ones.

Sessions that came in together time out together: with 10,000 in flight against slow
servers, hundreds of QUIT waits ran out on one tick, and each session woken, ended and
cached in that one turn held the event loop for 50 ms. So a turn calls FIRED_PER_TURN
callbacks at most, as the turn pacer lets that many sessions on, and those left come due
in the next turn.
"""

from __future__ import annotations

import asyncio
import heapq
import math
from collections.abc import Callable
from contextvars import Context

GRID = 0.05  # seconds: a stage times out up to this much after its due time
SWEEP_ABOVE = 1024  # entries left behind by timers taken out, before any sweep
FIRED_PER_TURN = 32  # callbacks called in one turn of the event loop, at most
NO_VARIABLES = Context()  # the callback reads no context variable: no copy of the caller's


class Deadlines:
    """Calls each armed callback once its due time (by the loop's clock) has passed."""

    __slots__ = ("_armed_at", "_callbacks", "_handle", "_heap", "_next", "loop")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._heap: list[tuple[float, int]] = []
        self._callbacks: dict[int, Callable[[], None]] = {}
        self._next = 0
        self._handle: asyncio.TimerHandle | None = None
        self._armed_at = math.inf  # when the loop's timer fires

    def __len__(self) -> int:
        """Callbacks armed and not yet called."""
        return len(self._callbacks)

    def arm(self, due: float, callback: Callable[[], None]) -> int:
        """Call `callback` once `due` has passed; the number takes it out again."""
        number = self._next
        self._next = number + 1
        heapq.heappush(self._heap, (due, number))
        self._callbacks[number] = callback
        if due < self._armed_at:
            self._arm_loop(due)
        elif len(self._heap) > SWEEP_ABOVE and len(self._heap) > 2 * len(self._callbacks):
            self._sweep()
        return number

    def disarm(self, number: int) -> None:
        self._callbacks.pop(number, None)

    def _arm_loop(self, due: float) -> None:
        at = math.ceil(due / GRID) * GRID
        if at >= self._armed_at:
            return
        if self._handle is not None:
            self._handle.cancel()
        self._armed_at = at
        self._handle = self.loop.call_at(at, self._fire, context=NO_VARIABLES)

    def _fire(self) -> None:
        self._handle = None
        self._armed_at = math.inf
        now = self.loop.time()
        heap, callbacks = self._heap, self._callbacks
        fired = 0
        while heap and heap[0][0] <= now and fired < FIRED_PER_TURN:
            callback = callbacks.pop(heapq.heappop(heap)[1], None)
            if callback is not None:
                callback()
                fired += 1
        if heap:
            self._arm_loop(heap[0][0])  # one may be due already: called next turn, or on its grid

    def _sweep(self) -> None:
        """In place: a callback re-arming while `_fire` walks the heap may sweep it."""
        callbacks = self._callbacks
        self._heap[:] = [entry for entry in self._heap if entry[1] in callbacks]
        heapq.heapify(self._heap)


_last: Deadlines | None = None


def deadlines_of(loop: asyncio.AbstractEventLoop) -> Deadlines:
    """The loop's Deadlines. One loop runs at a time nearly always, so the last one is
    kept; a timer keeps the Deadlines it armed in, so another loop's replacing it here
    disturbs none already armed."""
    global _last
    found = _last
    if found is None or found.loop is not loop:
        found = _last = Deadlines(loop)
    return found
