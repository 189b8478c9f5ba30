"""The asyncio timers a test's event loop is asked to arm, counted."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest


def counting_call_at(monkeypatch: pytest.MonkeyPatch, loop: asyncio.AbstractEventLoop
                     ) -> list[float]:
    """The times `loop.call_at` is asked for from now on, in order."""
    armed: list[float] = []
    call_at = loop.call_at

    def counting(when: float, callback: Any, *args: Any, **context: Any) -> asyncio.TimerHandle:
        armed.append(when)
        return call_at(when, callback, *args, **context)

    monkeypatch.setattr(loop, "call_at", counting)
    return armed
