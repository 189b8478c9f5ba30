"""Greylisting state that outlives a connection, so a client's retries can pass."""

import time


class Greylist:
    """Keyed by recipient address alone: tests dial from one loopback client anyway."""

    def __init__(self) -> None:
        self._seen: dict[str, tuple[float, int]] = {}

    def blocks(self, addr: str, seconds: float | None, attempts: int | None) -> bool:
        now = time.monotonic()
        key = addr.lower()
        first_seen, tries = self._seen.get(key, (now, 0))
        tries += 1
        self._seen[key] = (first_seen, tries)
        waited = seconds is None or now - first_seen >= seconds
        counted = attempts is None or tries >= attempts
        return not (waited and counted)
