"""The Python API: `async with Verifier(config) as v: await v.verify(address)`.

Each verification goes cache -> single-flight -> limits -> callout. A cached verdict
is answered at once (past its refresh time, a background callout renews it);
concurrent requests for one address share one callout; a callout waits for its
domain's budget and the host and global caps, or answers transient/rate_limited.
This module is the thin front: parsing, batching by domain, and the cache's first
look; the parts behind it are built by `cbv.engine.assembly`.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator, Iterable, Sequence
from types import TracebackType
from typing import Unpack

from cbv.address import Address, AddressError, parse_address
from cbv.cache.backend import CacheBackend
from cbv.cache.records import CachedVerdict
from cbv.callout.runner import for_recipient
from cbv.config import Config
from cbv.egress.pool import EgressPool
from cbv.engine.assembly import Engine, Injected, assemble
from cbv.engine.cooldown import Cooldown
from cbv.engine.gate import DestinationGate
from cbv.engine.syntax import syntax_verdict
from cbv.model import Verdict

PARSED_MEMO = 65_536


@functools.lru_cache(maxsize=PARSED_MEMO)
def _parse(text: str) -> Address:
    """Cached hits are cheaper than parsing; the same senders come back again and again."""
    return parse_address(text)


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
        self._store = engine.store
        self._callouts = engine.callouts
        self._runner = engine.runner

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
        await self._engine.aclose()

    async def flush(self) -> None:
        """Return once every verdict stored so far is durable."""
        await self._store.cache.flush()

    @property
    def cache(self) -> CacheBackend:
        return self._store.cache

    @property
    def senders(self) -> tuple[str, ...]:
        return self._runner.senders

    @property
    def egresses(self) -> EgressPool:
        """The ways out for callouts, their states and budgets (docs/egress.md)."""
        return self._engine.egresses

    @property
    def gate(self) -> DestinationGate:
        """The budgets and cooldown in front of each MX address (free_in for schedulers)."""
        return self._engine.gate

    @property
    def cooldown(self) -> Cooldown:
        """MX addresses that refused the verifier (the status page and metrics list them)."""
        return self._engine.limits.cooldown

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
        return await self._callouts.verdict_of(parsed, transcript, use_cache)

    def cached(self, address: str, recipient: str = "") -> Verdict | None:
        """The verdict `verify(address)` would answer from the cache's in-process memory,
        without waiting for anything; None when it is not there (or the backend keeps
        none, as Redis), and `verify` is the way. Counted, and renewed in the background
        when due, as `verify` does, on behalf of a message to `recipient` if one is named
        (`for_recipient`); called in the event loop."""
        try:
            parsed = _parse(address)
        except AddressError:
            return None
        return self._answer(parsed, self._store.held(parsed), recipient)

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
            found.update(await self._callouts.resolve(missing, transcript, use_cache))
        return found

    async def _lookup(self, address: Address) -> Verdict | None:
        record = self._store.held(address)
        if record is None:
            record = await self._store.lookup(address)
        return self._answer(address, record)

    def _answer(self, address: Address, record: CachedVerdict | None,
                recipient: str | None = None) -> Verdict | None:
        """A cached record's verdict, its renewal started when it is due for one: on
        behalf of a message to `recipient`, or of the one the caller's context names
        (None). The context is set here only, not around every lookup: every policy
        request makes one."""
        if record is None:
            return None
        if self._store.needs_refresh(record):
            if recipient is None:
                self._callouts.refresh_in_background(address)
            else:
                with for_recipient(recipient):
                    self._callouts.refresh_in_background(address)
        return record.verdict
