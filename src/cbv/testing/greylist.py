"""Greylisting state that outlives a connection, so a client's retries can pass."""

import time
from collections.abc import Callable


class Greylist:
    """Keyed by recipient address alone: tests dial from one loopback client anyway.
    `clock` (seconds) lets a test move time on instead of waiting it out."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._seen: dict[str, tuple[float, int]] = {}

    def blocks(self, addr: str, seconds: float | None, attempts: int | None) -> bool:
        now = self._clock()
        key = addr.lower()
        first_seen, tries = self._seen.get(key, (now, 0))
        tries += 1
        self._seen[key] = (first_seen, tries)
        waited = seconds is None or now - first_seen >= seconds
        counted = attempts is None or tries >= attempts
        return not (waited and counted)
