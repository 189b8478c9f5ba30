"""The Python API: `async with Verifier(config) as v: await v.verify(address)`.

Each verification goes cache -> single-flight -> limits -> callout. A cached verdict
is answered at once (past its refresh time, a background callout renews it);
concurrent requests for one address share one callout; a callout waits for its
domain's budget and the host and global caps, or answers transient/rate_limited.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
import time
from collections.abc import AsyncIterator, Coroutine, Iterable, Mapping, Sequence
from types import TracebackType
from typing import Any, Unpack

from cbv.address import Address, AddressError, parse_address
from cbv.cache.backend import CacheBackend
from cbv.cache.records import Fact, Lifetimes, keeps_previous
from cbv.callout.runner import NOTHING_KNOWN, DomainKnowledge
from cbv.config import CacheConfig, Config
from cbv.egress.pool import EgressPool
from cbv.engine.assembly import Engine, Injected, assemble
from cbv.engine.limits import GLOBAL_POOL
from cbv.engine.singleflight import LocalFlights
from cbv.engine.syntax import syntax_verdict
from cbv.model import Reason, Result, Stage, Verdict, utcnow

log = logging.getLogger("cbv.engine")

PARSED_MEMO = 65_536


def rate_limited_verdict(address: Address, detail: str) -> Verdict:
    return Verdict(
        address=str(address),
        result=Result.TRANSIENT,
        reason=Reason.RATE_LIMITED,
        checked_at=utcnow(),
        detail=detail,
    )


def unreachable_verdict(address: Address, domain: str) -> Verdict:
    return Verdict(
        address=str(address),
        result=Result.TRANSIENT,
        reason=Reason.CONNECTION_FAILED,
        stage=Stage.CONNECT,
        cached=True,
        checked_at=utcnow(),
        detail=f"no mail exchanger of {domain} took a connection lately; not dialled again yet",
    )


@functools.lru_cache(maxsize=PARSED_MEMO)
def _parse(text: str) -> Address:
    """Cached hits are cheaper than parsing; the same senders come back again and again."""
    return parse_address(text)


def fact_lifetimes(config: CacheConfig) -> dict[str, float]:
    """Seconds each DomainKnowledge field is remembered once learned."""
    return {
        "catch_all": config.catch_all_ttl,
        "refuses_null_sender": config.null_sender_ttl,
        "vrfy_useful": config.vrfy_ttl,
        "one_recipient_per_transaction": config.recipient_limit_ttl,
        "unreachable": config.unreachable_ttl,
    }


class Verifier:
    """Verifies addresses by SMTP callout; safe to share across tasks of one event loop.

    `Verifier(config)` runs the parts `cbv.engine.assembly.assemble` builds from the
    config; any of them may be passed in instead (`cache=`, `resolver=`, `connector=`,
    `clock=`, `observer=`, ...), or an `Engine` assembled beforehand. A cache opened
    here is closed by `aclose()`; a `cache` passed in is flushed but left open.
    """

    def __init__(
        self, config: Config | Engine | None = None, **injected: Unpack[Injected]
    ) -> None:
        if isinstance(config, Engine):
            if injected:
                raise TypeError("pass injected parts to assemble(), not beside an Engine")
            engine = config
        else:
            engine = assemble(config or Config(), **injected)
        self._engine = engine
        self.config = engine.config
        self._clock = engine.clock
        self._observer = engine.observer
        self._cache = engine.cache
        self._lifetimes = Lifetimes.from_config(self.config.cache)
        self._fact_lifetimes = fact_lifetimes(self.config.cache)
        self._limits = engine.limits
        self._locks = engine.locks
        self._flights = LocalFlights()
        self._runner = engine.runner
        self._background: set[asyncio.Task[None]] = set()
        self._refreshing: set[Address] = set()

    async def __aenter__(self) -> Verifier:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Stop background refreshes and make every stored verdict durable."""
        for task in list(self._background):
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        await self._engine.aclose()

    async def flush(self) -> None:
        """Return once every verdict stored so far is durable."""
        await self._cache.flush()

    @property
    def cache(self) -> CacheBackend:
        return self._cache

    @property
    def senders(self) -> tuple[str, ...]:
        return self._runner.senders

    @property
    def egresses(self) -> EgressPool:
        """The ways out for callouts, their states and budgets (docs/egress.md)."""
        return self._engine.egresses

    async def verify(
        self, address: str, *, transcript: bool = False, use_cache: bool = True
    ) -> Verdict:
        """`use_cache=False` neither reads nor writes the cache; `transcript=True` always
        calls out (the dialogue is what was asked for) and stores the result."""
        try:
            parsed = _parse(address)
        except AddressError as exc:
            return syntax_verdict(address, exc)
        if use_cache and not transcript:
            hit = await self._lookup(parsed)
            if hit is not None:
                return hit
        verdicts = await self._resolve([parsed], transcript, use_cache)
        return verdicts[parsed]

    async def verify_many(
        self, addresses: Iterable[str], *, transcript: bool = False, use_cache: bool = True
    ) -> list[Verdict]:
        """Verdicts in input order; addresses of one domain may share SMTP sessions."""
        items = list(addresses)
        verdicts: list[Verdict | None] = [None] * len(items)
        async for index, verdict in self.iter_verify(
            items, transcript=transcript, use_cache=use_cache
        ):
            verdicts[index] = verdict
        return [v for v in verdicts if v is not None]

    async def iter_verify(
        self, addresses: Sequence[str], *, transcript: bool = False, use_cache: bool = True
    ) -> AsyncIterator[tuple[int, Verdict]]:
        """(input index, Verdict) pairs as they complete."""
        positions: dict[Address, list[int]] = {}
        for index, raw in enumerate(addresses):
            try:
                parsed = _parse(raw)
            except AddressError as exc:
                yield index, syntax_verdict(raw, exc)
                continue
            positions.setdefault(parsed, []).append(index)
        batches = self._batches(list(positions))
        results: asyncio.Queue[dict[Address, Verdict]] = asyncio.Queue()
        queue: asyncio.Queue[list[Address]] = asyncio.Queue()
        for batch in batches:
            queue.put_nowait(batch)

        async def worker() -> None:
            while not queue.empty():
                batch = queue.get_nowait()
                await results.put(await self._verify_batch(batch, transcript, use_cache))

        workers = [
            asyncio.create_task(worker())
            for _ in range(min(len(batches), self.config.limits.max_in_flight))
        ]
        try:
            for _ in batches:
                for address, verdict in (await results.get()).items():
                    for index in positions[address]:
                        yield index, verdict
        finally:
            for task in workers:
                task.cancel()
            await asyncio.gather(*workers, return_exceptions=True)

    def _batches(self, addresses: list[Address]) -> list[list[Address]]:
        """Group by the domain whose hosts are asked, in session-sized batches."""
        per_session = self.config.callout.max_rcpts_per_session
        if self.config.callout.detect_catch_all:
            per_session = max(1, per_session - 1)
        groups: dict[str, list[Address]] = {}
        for address in addresses:
            groups.setdefault(self._runner.mx_domain(address), []).append(address)
        return [
            group[start : start + per_session]
            for group in groups.values()
            for start in range(0, len(group), per_session)
        ]

    async def _verify_batch(
        self, batch: list[Address], transcript: bool, use_cache: bool
    ) -> dict[Address, Verdict]:
        found: dict[Address, Verdict] = {}
        if use_cache and not transcript:
            # One after the other: a task per address costs more than a local lookup.
            hits = [await self._lookup(address) for address in batch]
            found = {a: hit for a, hit in zip(batch, hits, strict=True) if hit is not None}
        missing = [address for address in batch if address not in found]
        if missing:
            found.update(await self._resolve(missing, transcript, use_cache))
        return found

    # The cache

    async def _lookup(self, address: Address) -> Verdict | None:
        record = await self._cache.get(address)
        self._observer.cache_lookup(record is not None)
        if record is None:
            return None
        if record.needs_refresh(self._clock()):
            self._refresh_in_background(address)
        return record.verdict

    def _refresh_in_background(self, address: Address) -> None:
        if address in self._refreshing or self._flights.is_flying(address):
            return
        self._refreshing.add(address)
        self._spawn(self._refresh(address))

    async def _refresh(self, address: Address) -> None:
        try:
            await self._resolve([address], transcript=False, use_cache=True)
        except Exception:
            log.exception("background refresh of %s failed", address)
        finally:
            self._refreshing.discard(address)

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _known(self, domain: str) -> DomainKnowledge:
        facts = await self._cache.facts(domain)
        return DomainKnowledge(**{name: fact.value for name, fact in facts.items()
                                  if name in self._fact_lifetimes})

    async def _learn(self, domain: str, learned: DomainKnowledge) -> None:
        now = self._clock()
        facts: dict[str, Fact] = {}
        for name, value in dataclasses.asdict(learned).items():
            lifetime = self._fact_lifetimes[name]
            if value is not None and lifetime > 0:
                facts[name] = Fact(value, now + lifetime)
        if facts:
            await self._cache.learn(domain, facts)

    async def _store(self, verdicts: Mapping[Address, Verdict]) -> dict[Address, Verdict]:
        """Store fresh verdicts; each comes back with the `expires_at` it was stored with."""
        now = self._clock()
        stored: dict[Address, Verdict] = {}
        for address, verdict in verdicts.items():
            stored[address] = verdict
            record = self._lifetimes.record(verdict, now)
            if record is None:
                continue
            if verdict.result is Result.TRANSIENT:
                previous = await self._cache.get(address)
                if previous is not None and keeps_previous(previous, verdict, now):
                    retry_at = now + self._lifetimes.transient_ttl
                    await self._cache.put(previous.postponed(retry_at))
                    continue
            await self._cache.put(record)
            stored[address] = verdict.model_copy(
                update={"expires_at": record.verdict.expires_at}
            )
        return stored

    # Single-flight

    async def _resolve(
        self, addresses: list[Address], transcript: bool, use_cache: bool
    ) -> dict[Address, Verdict]:
        """Join the callouts in flight for these addresses, lead one for the rest."""
        if transcript:  # the caller asked for its own dialogue: nothing to share
            return await self._callout(addresses, transcript=True, use_cache=use_cache)
        waiting: dict[Address, asyncio.Future[Verdict]] = {}
        led: list[Address] = []
        for address in addresses:
            flight = self._flights.join(address)
            if flight is None:
                flight = self._flights.lead(address)
                led.append(address)
            waiting[address] = flight
        if led:
            self._spawn(self._lead(led, use_cache))
        return {address: await asyncio.shield(flight) for address, flight in waiting.items()}

    async def _lead(self, addresses: list[Address], use_cache: bool) -> None:
        """Runs as its own task, so a caller that goes away does not cancel the others."""
        try:
            if use_cache:
                verdicts = await self._lead_shared(addresses)
            else:
                verdicts = await self._callout(addresses, transcript=False, use_cache=False)
        except BaseException as exc:
            for address in addresses:
                self._flights.fail(address, exc)
            if isinstance(exc, asyncio.CancelledError):
                raise
            return
        for address in addresses:
            self._flights.land(address, verdicts[address])

    async def _lead_shared(self, addresses: list[Address]) -> dict[Address, Verdict]:
        claimed, elsewhere = await self._locks.claim(addresses)
        if not elsewhere:  # the usual case: no other process verifies any of these
            return await self._verify_claimed(claimed)
        parts = await asyncio.gather(
            self._verify_claimed(claimed), *(self._after_elsewhere(a) for a in elsewhere)
        )
        return {address: verdict for part in parts for address, verdict in part.items()}

    async def _verify_claimed(self, addresses: list[Address]) -> dict[Address, Verdict]:
        """Look again (another process may have just stored it), then call out."""
        if not addresses:
            return {}
        try:
            records = [await self._cache.get(a) for a in addresses]
            now = self._clock()
            verdicts = {
                address: record.verdict
                for address, record in zip(addresses, records, strict=True)
                if record is not None and not record.needs_refresh(now)
            }
            todo = [address for address in addresses if address not in verdicts]
            if todo:
                verdicts.update(await self._callout(todo, transcript=False, use_cache=True))
            return verdicts
        finally:
            await self._locks.release(addresses)

    async def _after_elsewhere(self, address: Address) -> dict[Address, Verdict]:
        """Another process verifies `address`: take its verdict, or call out if none landed."""
        await self._locks.wait(address)
        record = await self._cache.get(address)
        if record is not None:
            return {address: record.verdict}
        return await self._callout([address], transcript=False, use_cache=True)

    # Limits and the callout

    async def _callout(
        self, addresses: list[Address], transcript: bool, use_cache: bool
    ) -> dict[Address, Verdict]:
        domain = self._runner.mx_domain(addresses[0])
        known = await self._known(domain) if use_cache else NOTHING_KNOWN
        if known.unreachable:
            return {address: unreachable_verdict(address, domain) for address in addresses}
        wait = await self._limits.budget.reserve(domain)
        if wait is None:
            self._observer.limit_refused(domain, "domain_budget")
            detail = f"callout budget for {domain} spent; not calling out now"
            return {address: rate_limited_verdict(address, detail) for address in addresses}
        if wait:
            self._observer.limit_wait(domain, wait)
            await asyncio.sleep(wait)
        async with self._limits.in_flight.hold(GLOBAL_POOL) as admitted:
            if not admitted:
                self._observer.limit_refused(domain, "in_flight")
                detail = "too many callouts in flight; not calling out now"
                return {address: rate_limited_verdict(address, detail) for address in addresses}
            self._observer.callout_started()
            started = time.perf_counter()
            verdicts: dict[Address, Verdict] = {}
            try:
                report = await self._runner.run_report(addresses, transcript, known)
                verdicts = report.verdicts
            finally:
                self._observer.callout_finished(verdicts.values(),
                                                time.perf_counter() - started)
        if not use_cache:
            return report.verdicts
        await self._learn(domain, report.learned)
        return await self._store(report.verdicts)
