"""The event loop `cbv serve` runs on: uvloop when it is installed (`cbv[speed]`), unless
`[server] event_loop` says otherwise; the listeners work the same on either."""

from __future__ import annotations

import asyncio
import importlib
import math
import select
import selectors
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

from cbv.config import ConfigError

LoopFactory = Callable[[], asyncio.AbstractEventLoop]

# Ready sockets one turn of asyncio's loop takes at most. Its epoll selector hands over
# every ready socket at once, and the loop runs a callback for each before any timer:
# 10,000 requests or replies arriving together held the loop for a quarter of a second
# (docs/benchmarks.md). The rest stay ready and come in the next turns. 128, not 256: on
# a slow machine 256 replies took up to 0.1 s of one turn (10,000 in flight, 8 pairs of
# slow-farm runs taken in turn: the longest stall 0.051-0.093 s against 0.066-0.106 s,
# lower or the same in each pair).
READY_PER_TURN = 128


if sys.platform == "linux":  # epoll; elsewhere asyncio's loop is left as it is

    class BoundedEpollSelector(selectors.EpollSelector):
        """asyncio's epoll selector, asking the kernel for READY_PER_TURN sockets at most.

        epoll is level-triggered here, and the kernel puts a socket it reported back at the
        end of its ready list: sockets left over come first in the next turn, none waits for
        ever."""

        if TYPE_CHECKING:  # the stdlib's own, which typeshed leaves out
            _selector: select.epoll

            def _key_from_fd(self, fd: int) -> selectors.SelectorKey | None: ...

        def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
            if timeout is None:
                wait = -1.0
            elif timeout <= 0:
                wait = 0.0
            else:  # epoll waits in milliseconds: at least `timeout`, as the stdlib rounds
                wait = math.ceil(timeout * 1e3) * 1e-3
            try:
                fd_events = self._selector.poll(wait, READY_PER_TURN)
            except InterruptedError:
                return []
            ready = []
            for fd, event in fd_events:
                key = self._key_from_fd(fd)
                if key is not None:
                    events = 0
                    if event & ~select.EPOLLIN:
                        events |= selectors.EVENT_WRITE
                    if event & ~select.EPOLLOUT:
                        events |= selectors.EVENT_READ
                    ready.append((key, events & key.events))
            return ready


def new_asyncio_loop() -> asyncio.AbstractEventLoop:
    """asyncio's own loop, taking at most READY_PER_TURN ready sockets a turn on Linux."""
    if sys.platform == "linux":
        return asyncio.SelectorEventLoop(BoundedEpollSelector())
    return asyncio.new_event_loop()


def loop_factory(choice: str) -> LoopFactory:
    """"auto", "asyncio" or "uvloop" (validated by the config) to what makes that loop."""
    if choice == "asyncio":
        return new_asyncio_loop
    try:
        uvloop = importlib.import_module("uvloop")
    except ImportError:
        if choice == "uvloop":
            raise ConfigError("[server] event_loop = \"uvloop\", but uvloop is not installed "
                              "(pip install 'cbv[speed]')") from None
        return new_asyncio_loop
    factory: LoopFactory = uvloop.new_event_loop
    return factory


def loop_name(loop: asyncio.AbstractEventLoop) -> str:
    """"uvloop" or "asyncio", for the start-up log line."""
    return type(loop).__module__.partition(".")[0]

