"""`cbv verify --file`: budgets are a schedule, not a verdict. An address whose callout met
a spent budget (`rate_limited`) waits its turn and is verified again once the addresses
verified meanwhile have let the budgets refill; it is final only past the horizon."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Sequence

from cbv.engine.verifier import Verifier
from cbv.model import Reason, Verdict


async def verify_in_turn(
    verifier: Verifier, addresses: Sequence[str], *, transcript: bool, use_cache: bool,
    horizon: float, budget_interval: float, waiting: Callable[[int], None],
) -> AsyncIterator[tuple[int, Verdict]]:
    """(input index, final Verdict) pairs as they are decided; `waiting` is told how many
    addresses wait on budgets whenever that changes."""
    deadline = time.monotonic() + horizon
    pending = list(range(len(addresses)))
    held = 0
    while pending:
        started = time.monotonic()
        retrying = held > 0
        limited: list[int] = []
        async for position, verdict in verifier.iter_verify(
                [addresses[i] for i in pending], transcript=transcript, use_cache=use_cache):
            index = pending[position]
            if retrying:
                held -= 1
            if verdict.reason is Reason.RATE_LIMITED and time.monotonic() < deadline:
                limited.append(index)
                held += 1
                waiting(held)
                continue
            if retrying:
                waiting(held)
            yield index, verdict
        pending = sorted(limited)
        pause = min(budget_interval - (time.monotonic() - started), deadline - time.monotonic())
        if pending and pause > 0:
            await asyncio.sleep(pause)  # one budget interval since the round began
