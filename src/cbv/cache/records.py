"""What the cache keeps and for how long: pure data and rules, shared by every backend."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Final

from cbv.config import CacheConfig
from cbv.model import Reason, Result, Verdict

log = logging.getLogger("cbv.cache")

# Keys remembered as already reported; past this many the memory starts again.
REPORTED_KEYS = 10_000

# Verdicts that say nothing lasting about the address: never stored.
UNCACHEABLE = frozenset({Reason.RATE_LIMITED, Reason.BAD_SYNTAX, Reason.NOT_CHECKED})
STORED_EXCLUDE = frozenset({"transcript", "smtp_cbv_result"})


def epoch_to_datetime(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def dump_verdict(verdict: Verdict) -> str:
    return verdict.model_dump_json(exclude=set(STORED_EXCLUDE))


def load_verdict(text: str | bytes) -> Verdict:
    return Verdict.model_validate_json(text)


class OncePerKey:
    """Which keys were already reported: a bad key logs one line, not one per request.
    Bounded: past REPORTED_KEYS keys the memory starts again."""

    def __init__(self) -> None:
        self._seen: set[str] = set()

    def first(self, key: str) -> bool:
        if key in self._seen:
            return False
        if len(self._seen) >= REPORTED_KEYS:
            self._seen.clear()
        self._seen.add(key)
        return True


class BadRecords:
    """A stored record that does not decode is a miss, reported once per key.

    The cache is shared, outlives cbv versions and can be written by anyone who can reach
    Redis or the file: nothing read back is trusted. The next verdict for the address
    overwrites the record."""

    def __init__(self, where: str) -> None:
        self._where = where
        self._reported = OncePerKey()

    def report(self, key: str, error: Exception) -> None:
        if self._reported.first(key):
            log.warning("%s: ignoring the undecodable cache record %s (%s); it is treated as "
                        "a miss and overwritten by the next verdict", self._where, key,
                        first_line(error))


def first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__


@dataclass(slots=True)
class CachedVerdict:
    """An address record: the verdict as served from the cache, and when to renew it."""

    verdict: Final[Verdict]  # cached=True, expires_at set, no transcript
    refresh_at: Final[float]  # epoch seconds: past it, answer and refresh in the background
    expires_at: Final[float]  # epoch seconds: past it, the record is gone

    @property
    def address(self) -> str:
        return self.verdict.address

    @property
    def domain(self) -> str:
        return self.verdict.address.rpartition("@")[2]

    def needs_refresh(self, now: float) -> bool:
        return now >= self.refresh_at

    def is_expired(self, now: float) -> bool:
        return now >= self.expires_at

    def postponed(self, refresh_at: float) -> CachedVerdict:
        return replace(self, refresh_at=min(refresh_at, self.expires_at))


@dataclass(frozen=True, slots=True)
class Fact:
    """One thing learned about a domain's mail exchangers, e.g. "catch_all" is True."""

    value: bool
    expires_at: float


def unexpired(facts: Mapping[str, Fact], now: float) -> dict[str, Fact]:
    """The facts still valid at `now`, in a dict of the caller's own."""
    current: dict[str, Fact] = {}
    for name, fact in facts.items():  # no comprehension: no cell for `now` per callout
        if fact.expires_at > now:
            current[name] = fact
    return current


@dataclass(frozen=True, slots=True)
class Lifetimes:
    pass_ttl: float
    pass_refresh: float
    fail_ttl: float
    transient_ttl: float
    unknown_ttl: float

    @classmethod
    def from_config(cls, config: CacheConfig) -> Lifetimes:
        return cls(
            pass_ttl=config.pass_ttl,
            pass_refresh=config.pass_refresh,
            fail_ttl=config.fail_ttl,
            transient_ttl=config.transient_ttl,
            unknown_ttl=config.unknown_ttl,
        )

    def ttl(self, result: Result) -> float:
        """Asked for every verdict stored: no mapping built per call."""
        if result is Result.PASS:
            return self.pass_ttl
        if result is Result.FAIL:
            return self.fail_ttl
        if result is Result.TRANSIENT:
            return self.transient_ttl
        return self.unknown_ttl

    def record(self, verdict: Verdict, now: float) -> CachedVerdict | None:
        """The record to store for a fresh verdict, or None when it must not be cached."""
        ttl = self.ttl(verdict.result)
        if ttl <= 0 or verdict.reason in UNCACHEABLE:
            return None
        expires_at = now + ttl
        refresh_at = expires_at
        if verdict.result is Result.PASS and 0 < self.pass_refresh < ttl:
            refresh_at = now + self.pass_refresh
        stored = verdict.model_copy(
            update={"cached": True, "expires_at": epoch_to_datetime(expires_at), "transcript": None}
        )
        return CachedVerdict(stored, refresh_at, expires_at)


def keeps_previous(previous: CachedVerdict | None, fresh: Verdict, now: float) -> bool:
    """A transient answer says nothing about the address: it never replaces a valid pass/fail."""
    return (
        previous is not None
        and not previous.is_expired(now)
        and previous.verdict.result in (Result.PASS, Result.FAIL)
        and fresh.result is Result.TRANSIENT
    )


@dataclass
class CacheStats:
    backend: str
    addresses: int = 0
    by_result: dict[str, int] = field(default_factory=dict)
    awaiting_refresh: int = 0
    domains_with_facts: int = 0
    size_bytes: int | None = None

    def count(self, record: CachedVerdict, now: float) -> None:
        self.addresses += 1
        result = record.verdict.result.value
        self.by_result[result] = self.by_result.get(result, 0) + 1
        self.awaiting_refresh += record.needs_refresh(now)
