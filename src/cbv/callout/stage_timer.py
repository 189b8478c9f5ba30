"""One timer for all the time limits of an SMTP session's stages."""

from __future__ import annotations

import asyncio
from contextvars import Context
from types import TracebackType

# For callbacks that read no context variable (`_fire`, a lead task's done callback): one
# shared empty context spares each a copy of its caller's, an object every callout in
# flight would keep.
NO_VARIABLES = Context()


class StageTimer:
    """Bounds each stage of a session (a reply awaited, the QUIT wait) as
    `asyncio.timeout` would, with one timer for the whole session instead of one armed
    and cancelled per read, a cost every callout paid several times over.

    The timer stays armed while each stage's due time is later than the one it was
    armed for; firing before the current stage is due, it re-arms for that; firing
    once it is due, it cancels the session's task and the stage raises TimeoutError.
    """

    __slots__ = ("_cancelling", "_due", "_expired", "_handle", "_loop", "_task")

    def __init__(self) -> None:
        self._loop = asyncio.get_running_loop()  # once: on Python 3.11 a system call each
        task = asyncio.current_task(self._loop)
        if task is None:
            raise RuntimeError("StageTimer must be used inside a task")
        self._task = task
        self._handle: asyncio.TimerHandle | None = None
        self._due: float | None = None  # None between stages
        self._expired = False
        self._cancelling = 0

    def stage(self, seconds: float) -> StageTimer:
        """`with timer.stage(seconds):` the block raises TimeoutError past `seconds`."""
        due = self._loop.time() + seconds
        self._due = due
        handle = self._handle
        if handle is None or handle.when() > due:
            if handle is not None:
                handle.cancel()
            self._handle = self._loop.call_at(due, self._fire, context=NO_VARIABLES)
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
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _fire(self) -> None:
        self._handle = None
        due = self._due
        if due is None:
            return  # between stages: the next one arms the timer again
        if due > self._loop.time():
            self._handle = self._loop.call_at(due, self._fire, context=NO_VARIABLES)
            return
        self._expired = True
        self._task.cancel()
