"""One timer for all the time limits of an SMTP session's stages."""

from __future__ import annotations

import asyncio
from types import TracebackType

from cbv.callout.deadlines import Deadlines, deadlines_of


class StageTimer:
    """Bounds each stage of a session (a reply awaited, the QUIT wait) as
    `asyncio.timeout` would, with one timer for the whole session instead of one armed
    and cancelled per read, a cost every callout paid several times over; the timers of
    all sessions share one heap and one asyncio timer (cbv.callout.deadlines).

    The timer stays armed while each stage's due time is later than the one it was
    armed for; firing before the current stage is due, it re-arms for that; firing
    once it is due, it cancels the session's task and the stage raises TimeoutError.
    """

    __slots__ = ("_armed", "_armed_for", "_cancelling", "_deadlines", "_due", "_expired",
                 "_loop", "_task")

    def __init__(self) -> None:
        self._loop = asyncio.get_running_loop()  # once: on Python 3.11 a system call each
        task = asyncio.current_task(self._loop)
        if task is None:
            raise RuntimeError("StageTimer must be used inside a task")
        self._task = task
        self._deadlines: Deadlines = deadlines_of(self._loop)
        self._armed: int | None = None  # its number in the deadlines
        self._armed_for = 0.0
        self._due: float | None = None  # None between stages
        self._expired = False
        self._cancelling = 0

    def stage(self, seconds: float) -> StageTimer:
        """`with timer.stage(seconds):` the block raises TimeoutError past `seconds`."""
        due = self._loop.time() + seconds
        self._due = due
        armed = self._armed
        if armed is None or self._armed_for > due:
            if armed is not None:
                self._deadlines.disarm(armed)
            self._armed = self._deadlines.arm(due, self._fire)
            self._armed_for = due
        return self

    def __enter__(self) -> None:
        self._expired = False
        self._cancelling = self._task.cancelling()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self._due = None
        if self._expired:
            self._expired = False
            if self._task.uncancel() <= self._cancelling and exc_type is asyncio.CancelledError:
                raise TimeoutError from exc

    def close(self) -> None:
        """The session is over: nothing left to time."""
        self._due = None
        if self._armed is not None:
            self._deadlines.disarm(self._armed)
            self._armed = None

    def _fire(self) -> None:
        self._armed = None
        due = self._due
        if due is None:
            return  # between stages: the next one arms the timer again
        if due > self._loop.time():
            self._armed = self._deadlines.arm(due, self._fire)
            self._armed_for = due
            return
        self._expired = True
        self._task.cancel()
