"""The composition root: the one place a `Config` becomes the engine's running parts.

Everything that does I/O (cache and its Redis link, limits, cross-process locks, DNS,
the TCP connector) is opened here or injected by the caller, never built inside the
parts that use it. The Python API, the daemon, the CLI and the benchmarks all build
through `assemble`; tests pass fakes for whichever parts they replace.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypedDict, Unpack

from cbv.cache.backend import CacheBackend, CacheError, Clock
from cbv.cache.opening import open_cache
from cbv.callout.connector import Connector
from cbv.callout.runner import CalloutRunner
from cbv.config import Config, ConfigError
from cbv.dns.resolver import DnspythonResolver, Resolver
from cbv.egress.pool import EgressPool
from cbv.engine.egress_ledger import build_egress_pool
from cbv.engine.gate import DestinationGate
from cbv.engine.limited_callout import LimitedCallout
from cbv.engine.limits import CalloutLimits
from cbv.engine.observer import NO_OBSERVER, VerifierObserver
from cbv.engine.shared_callouts import SharedCallouts
from cbv.engine.singleflight import LocalFlights, ProcessLocks, RedisLocks, SharedLocks
from cbv.engine.verdict_store import VerdictStore

if TYPE_CHECKING:  # redis-py is imported only where a Redis URL is opened
    from cbv.cache.redis_link import RedisLink

LOCK_MARGIN = 5.0


@dataclass(frozen=True, slots=True)
class Engine:
    """The running parts one configuration builds."""

    config: Config
    cache: CacheBackend
    owns_cache: bool  # opened here, so closed with the engine; an injected one is only flushed
    limits: CalloutLimits
    locks: SharedLocks
    resolver: Resolver
    runner: CalloutRunner
    clock: Clock  # epoch seconds; tests pass a fake one to travel in time
    observer: VerifierObserver
    egresses: EgressPool
    gate: DestinationGate  # cooldown, destination budgets and host slots before each dial
    store: VerdictStore
    callouts: SharedCallouts

    async def aclose(self) -> None:
        """Stop background refreshes, make every stored verdict durable, and close the
        cache if it was opened here."""
        await self.callouts.aclose()
        if self.owns_cache:
            await self.cache.aclose()
        else:
            await self.cache.flush()


class Injected(TypedDict, total=False):
    """The parts a caller may pass in instead of having them built from the config."""

    cache: CacheBackend
    resolver: Resolver
    connector: Connector
    limits: CalloutLimits
    locks: SharedLocks
    clock: Clock
    observer: VerifierObserver


def lock_lease(config: Config) -> float:
    """How long a lock or a shared slot outlives a process that died holding it."""
    return config.callout.total_timeout + 2 * config.limits.max_wait + LOCK_MARGIN


def assemble(config: Config, **injected: Unpack[Injected]) -> Engine:
    """Open what `config` names for every part not passed in.

    Limits and locks are shared through Redis when the cache opened here is Redis, and
    kept in this process otherwise. Raises ConfigError when the cache cannot be opened.
    """
    clock = injected.get("clock", time.time)
    cache = injected.get("cache")
    limits = injected.get("limits")
    locks = injected.get("locks")
    resolver = injected.get("resolver")
    redis: RedisLink | None = None
    owns_cache = cache is None
    if cache is None:
        try:
            opened = open_cache(config.cache, clock=clock)
        except CacheError as exc:
            raise ConfigError(f"cache: {exc}") from None
        cache, redis = opened.backend, opened.redis
    lease = lock_lease(config)
    if limits is None:
        limits = CalloutLimits.build(config.limits, redis, lease, clock)
    if locks is None:
        locks = RedisLocks(redis, lease) if redis else ProcessLocks()
    if resolver is None:
        resolver = DnspythonResolver(config.dns, clock)
    observer = injected.get("observer", NO_OBSERVER)
    egresses = build_egress_pool(config.callout, redis, observer, clock)
    gate = DestinationGate(config.limits, limits, observer)
    runner = CalloutRunner(config, resolver, gate, injected.get("connector"), egresses=egresses)
    store = VerdictStore(cache, config.cache, clock, observer)
    callout = LimitedCallout(runner, limits, store, observer)
    return Engine(
        config=config,
        cache=cache,
        owns_cache=owns_cache,
        limits=limits,
        locks=locks,
        resolver=resolver,
        runner=runner,
        clock=clock,
        observer=observer,
        egresses=egresses,
        store=store,
        callouts=SharedCallouts(callout, store, locks, LocalFlights()),
        gate=gate,
    )
