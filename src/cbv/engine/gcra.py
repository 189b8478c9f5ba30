"""GCRA, the rate budget every limit uses: a token bucket kept as one timestamp, the
"theoretical arrival time" (TAT) of the next callout at the steady rate.

A callout reserves the next slot and sleeps until it comes, or is refused at once when
that slot is more than `max_wait` away, so callers never queue without bound and waiters
are served in order.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

RATES_REMEMBERED = 256  # (rate, burst) pairs: the configuration names a handful


@dataclass(frozen=True, slots=True)
class Gcra:
    interval: float  # seconds between callouts at the steady rate
    tolerance: float  # how far ahead of the steady rate a burst may run

    @classmethod
    @lru_cache(maxsize=RATES_REMEMBERED)
    def per_minute(cls, rate: float, burst: int) -> Gcra:
        """Built once per rate: every callout asks for its domain's."""
        interval = 60.0 / rate
        return cls(interval, (burst - 1) * interval)

    def reserve(self, tat: float, now: float, max_wait: float) -> tuple[float, float] | None:
        """(seconds to wait, the new arrival time), or None when the wait exceeds max_wait."""
        tat = max(tat, now)
        wait = tat - self.tolerance - now
        if wait > max_wait:
            return None
        return max(0.0, wait), tat + self.interval

    def free_in(self, tat: float, now: float) -> float:
        """Seconds until a reservation would need no wait; nothing is reserved."""
        return max(0.0, tat - self.tolerance - now)


def pruned(arrivals: dict[str, float], now: float) -> dict[str, float]:
    """The arrival times still ahead of `now` (the others would reserve as a fresh key
    does). A function of its own: a comprehension in the budgets' `reserve` made `now` a
    cell on every callout."""
    return {key: tat for key, tat in arrivals.items() if tat > now}
