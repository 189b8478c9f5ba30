"""Spreads a burst of callouts that would all go on in one event-loop turn over several.

Thousands of callouts in flight move in waves: their DNS answers come together, and a
slow server's replies to them come together. Each resumed callout runs for a while (a
connect is a system call that does the whole loopback handshake; a reply is parsed and
the next commands written), so a wave of 10,000 resumed at once holds the loop for
seconds, and every timer and DNS answer waits behind it. The pacer lets some go on per
turn and the rest in the turns after, in order: no callout is refused or capped, the wave
only takes turns.
"""

from __future__ import annotations

import asyncio
from collections import deque


class TurnPacer:
    __slots__ = ("_loop", "_per_turn", "_queue", "_released", "_scheduled")

    def __init__(self, per_turn: int) -> None:
        self._per_turn = per_turn
        self._queue: deque[asyncio.Future[None]] = deque()
        self._released = 0
        self._scheduled = False
        self._loop: asyncio.AbstractEventLoop | None = None

    def _on_loop(self, loop: asyncio.AbstractEventLoop) -> asyncio.AbstractEventLoop:
        """A runner may outlive its event loop (one `asyncio.run` after another): the turn
        the last loop was in, and its waiters, went with it."""
        if loop is not self._loop:
            self._loop = loop
            self._released = 0
            self._scheduled = False
            self._queue.clear()
        return loop

    def wake(self, waiter: asyncio.Future[None]) -> None:
        """Complete `waiter` in this turn if it has room, else in a later one."""
        loop = self._on_loop(waiter.get_loop())  # the running loop, without asking for it
        if self._released < self._per_turn and not self._queue:
            self._released += 1
            if not waiter.done():
                waiter.set_result(None)
        else:
            self._queue.append(waiter)
        self._schedule(loop)

    def admit(self) -> asyncio.Future[None] | None:
        """None when this turn has room; otherwise a future to await, done in a later turn.

        The running loop is asked for once, and not at all while this turn, scheduled on
        it, has room: on Python 3.11 each `get_running_loop()` is a getpid system call, and
        a callout passes here twice. (A turn left scheduled on a loop that has since
        closed lets at most one turn's worth through before the loop is asked for.)"""
        if self._scheduled and self._released < self._per_turn and not self._queue:
            self._released += 1
            return None
        loop = self._on_loop(asyncio.get_running_loop())
        if self._released < self._per_turn and not self._queue:
            self._released += 1
            self._schedule(loop)
            return None
        waiter = loop.create_future()
        self._queue.append(waiter)
        self._schedule(loop)
        return waiter

    async def take_turn(self) -> None:
        """Go on in this turn if it has room, else in a later one; the future awaited goes
        with this coroutine, not kept in the caller's frame while its callout is in flight."""
        waiter = self.admit()
        if waiter is not None:
            await waiter

    def _schedule(self, loop: asyncio.AbstractEventLoop) -> None:
        if not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._next_turn, loop)

    def _next_turn(self, loop: asyncio.AbstractEventLoop) -> None:
        self._scheduled = False
        self._released = 0
        queue = self._queue
        while queue and self._released < self._per_turn:
            waiter = queue.popleft()
            if not waiter.done():
                waiter.set_result(None)
                self._released += 1
        if self._released:
            self._schedule(loop)
