"""The event loop `cbv serve` runs on: uvloop when it is installed (`cbv[speed]`), unless
`[server] event_loop` says otherwise; the listeners work the same on either."""

from __future__ import annotations

import asyncio
import importlib
from collections.abc import Callable

from cbv.config import ConfigError

LoopFactory = Callable[[], asyncio.AbstractEventLoop]


def loop_factory(choice: str) -> LoopFactory:
    """"auto", "asyncio" or "uvloop" (validated by the config) to what makes that loop."""
    if choice == "asyncio":
        return asyncio.new_event_loop
    try:
        uvloop = importlib.import_module("uvloop")
    except ImportError:
        if choice == "uvloop":
            raise ConfigError("[server] event_loop = \"uvloop\", but uvloop is not installed "
                              "(pip install 'cbv[speed]')") from None
        return asyncio.new_event_loop
    factory: LoopFactory = uvloop.new_event_loop
    return factory


def loop_name(loop: asyncio.AbstractEventLoop) -> str:
    """"uvloop" or "asyncio", for the start-up log line."""
    return type(loop).__module__.partition(".")[0]

