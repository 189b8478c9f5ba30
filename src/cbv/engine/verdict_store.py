"""What the engine remembers: verdicts with their lifetimes, and facts about domains.

The cache backend only keeps records; this decides how long each verdict and fact is
kept, whether a transient verdict may replace a definite one, and what a lookup counts.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from cbv.address import Address
from cbv.cache.backend import CacheBackend, Clock
from cbv.cache.records import CachedVerdict, Fact, Lifetimes, keeps_previous
from cbv.callout.runner import NOTHING_KNOWN, DomainKnowledge
from cbv.config import CacheConfig
from cbv.engine.observer import VerifierObserver
from cbv.model import Result, Verdict


def fact_lifetimes(config: CacheConfig) -> dict[str, float]:
    """Seconds each DomainKnowledge field is remembered once learned."""
    return {
        "catch_all": config.catch_all_ttl,
        "refuses_null_sender": config.null_sender_ttl,
        "vrfy_useful": config.vrfy_ttl,
        "one_recipient_per_transaction": config.recipient_limit_ttl,
        "unreachable": config.unreachable_ttl,
    }


def _knowledge(facts: Mapping[str, Fact], names: Mapping[str, float]) -> DomainKnowledge:
    """Out of `VerdictStore.known`: a comprehension there made a cell on every callout."""
    return DomainKnowledge(**{name: fact.value for name, fact in facts.items()
                              if name in names})


class VerdictStore:
    """Verdicts and domain facts in a `CacheBackend`, with the configured lifetimes."""

    def __init__(
        self,
        cache: CacheBackend,
        config: CacheConfig,
        clock: Clock,
        observer: VerifierObserver,
    ) -> None:
        self.cache = cache
        self._lifetimes = Lifetimes.from_config(config)
        self._fact_lifetimes = fact_lifetimes(config)
        self._clock = clock
        self._observer = observer

    async def lookup(self, address: Address) -> CachedVerdict | None:
        """A request's look in the cache (counted as a hit or a miss)."""
        record = await self.cache.get(address)
        self._observer.cache_lookup(record is not None)
        return record

    def held(self, address: Address) -> CachedVerdict | None:
        """A request's look in the cache's in-process memory, without waiting: a record
        found is counted as a hit; none found counts nothing (`lookup` then looks and
        counts)."""
        record = self.cache.peek(address)
        if record is not None:
            self._observer.cache_lookup(True)
        return record

    def needs_refresh(self, record: CachedVerdict) -> bool:
        return self._clock() >= record.refresh_at  # `record.needs_refresh`, one call fewer

    async def fresh(self, addresses: Sequence[Address], *, from_elsewhere: bool
                    ) -> dict[Address, Verdict]:
        """The stored verdicts not yet due for a refresh: stored since the request looked.
        `from_elsewhere`: another process may have stored them, and the cache is asked;
        otherwise they landed in this process, and its memory is enough (for SQLite, no
        trip to the reader thread)."""
        records = []
        for address in addresses:  # an async comprehension is a coroutine more per callout
            records.append(await self.cache.get(address) if from_elsewhere
                           else self.cache.peek(address))
        now = self._clock()
        verdicts: dict[Address, Verdict] = {}
        for address, record in zip(addresses, records, strict=True):
            if record is not None and not record.needs_refresh(now):
                verdicts[address] = record.verdict
        return verdicts

    async def stored(self, address: Address) -> Verdict | None:
        """Whatever verdict is stored for `address`, due for a refresh or not."""
        record = await self.cache.get(address)
        return record.verdict if record is not None else None

    async def known(self, domain: str) -> DomainKnowledge:
        facts = await self.cache.facts(domain)
        if not facts:
            return NOTHING_KNOWN
        return _knowledge(facts, self._fact_lifetimes)

    async def learn(self, domain: str, learned: DomainKnowledge) -> None:
        """Field by field: most callouts learn nothing new, and `dataclasses.asdict` costs
        a deep copy per call."""
        if learned is NOTHING_KNOWN or learned == NOTHING_KNOWN:
            return
        now = self._clock()
        facts: dict[str, Fact] = {}
        for name, lifetime in self._fact_lifetimes.items():
            value = getattr(learned, name)
            if value is not None and lifetime > 0:
                facts[name] = Fact(value, now + lifetime)
        if facts:
            await self.cache.learn(domain, facts)

    async def keep(self, verdicts: Mapping[Address, Verdict]) -> dict[Address, Verdict]:
        """Store fresh verdicts; each comes back with the `expires_at` it was stored with.

        A transient verdict does not replace a definite one still worth keeping: that
        one is kept and retried later instead.
        """
        now = self._clock()
        stored: dict[Address, Verdict] = {}
        for address, verdict in verdicts.items():
            stored[address] = verdict
            record = self._lifetimes.record(verdict, now)
            if record is None:
                continue
            if verdict.result is Result.TRANSIENT:
                previous = await self.cache.get(address)
                if previous is not None and keeps_previous(previous, verdict, now):
                    retry_at = now + self._lifetimes.transient_ttl
                    await self.cache.put(previous.postponed(retry_at))
                    continue
            await self.cache.put(record)
            stored[address] = verdict.model_copy(
                update={"expires_at": record.verdict.expires_at}
            )
        return stored
