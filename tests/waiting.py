"""Waiting in tests for state the test can see, never for a fixed time."""

from __future__ import annotations

from collections.abc import Callable

from cbv.engine.polling import poll_until
from cbv.testing import ScriptedMX

WITHIN = 10.0  # seconds; generous, as the machine may be loaded: a pass returns at once


async def until(condition: Callable[[], bool], what: str, within: float = WITHIN) -> None:
    """Return as soon as `condition()` holds; fail naming `what` after `within` seconds."""

    async def check() -> bool:
        return condition()

    if not await poll_until(check, bool, within):
        raise AssertionError(f"not within {within:g} s: {what}")


def at_rcpt(mx: ScriptedMX) -> bool:
    """The MX has received a RCPT: a callout to it is under way, held there by any delay
    its script puts on RCPT (`mx.rcpts` fills only once the delay is over)."""
    return any(command[:4].upper() == "RCPT" for command in mx.commands)
