"""One connection to Redis shared by the cache, single-flight locks and limits.

Every call is bounded in time. When Redis fails, the link says so once in the log,
sends callers to their local fallback at once, and tries Redis again every
`redis_retry_interval` seconds until it answers.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import re
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from redis.asyncio import Redis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import DataError, RedisError, ResponseError

from cbv.cache.backend import CacheError
from cbv.cache.records import OncePerKey, first_line
from cbv.cache_location import CacheKind, CacheLocation
from cbv.config import CacheConfig

log = logging.getLogger("cbv.cache")

T = TypeVar("T")

PREFIX = "cbv"
ADDRESS_PLACEHOLDER = "{addr}"
HMAC_DIGEST_CHARS = 32
# Commands are bounded by redis-py's socket timeouts (connect and read, one retry); learning
# a Cluster's slots may touch several nodes and gets this many socket timeouts in all.
CALL_TIMEOUTS = 3
# Commands in flight at once; redis-py refuses rather than queues past its pool size (100).
MAX_COMMANDS_IN_FLIGHT = 64

RedisClient = Redis | RedisCluster
REDIS_FAILURES = (RedisError, OSError, TimeoutError)
# Redis answered, but refused this command for its data: a key of the wrong type, a value a
# script cannot use. Server-wide states (read-only replica, out of memory, cluster down,
# no permission) have their own subclasses and do mark the link down.
PER_KEY_ERRORS = (ResponseError, DataError)


def is_per_key(error: BaseException) -> bool:
    return type(error) in PER_KEY_ERRORS


def describe(location: CacheLocation) -> str:
    """The location without its password."""
    if location.kind is CacheKind.REDIS_CLUSTER:
        return "redis+cluster://" + ",".join(f"{host}:{port}" for host, port in location.nodes)
    return re.sub(r"//[^@/]*@", "//", location.url)


def make_client(location: CacheLocation, timeout: float) -> RedisClient:
    if location.kind is CacheKind.REDIS_CLUSTER:
        return RedisCluster(
            startup_nodes=[ClusterNode(host, port) for host, port in location.nodes],
            password=location.password,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            retry=Retry(NoBackoff(), 1),
            require_full_coverage=True,
        )
    client: Redis = Redis.from_url(
        location.url,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        retry=Retry(NoBackoff(), 1),
        health_check_interval=0,
    )
    return client


class KeyScheme:
    """Keys carry the domain as a Cluster hash tag, so one domain's keys share a slot and
    its scripts stay atomic. With an HMAC key, addresses and domains are replaced by keyed
    digests in keys, and addresses by a placeholder in values: a dump leaks no address."""

    def __init__(self, hmac_key: str = "") -> None:
        self._secret = hmac_key.encode() if hmac_key else None

    @property
    def conceals(self) -> bool:
        return self._secret is not None

    def _digest(self, text: str) -> str:
        assert self._secret is not None
        return hmac.new(self._secret, text.encode(), hashlib.sha256).hexdigest()[
            :HMAC_DIGEST_CHARS
        ]

    def tag(self, domain: str) -> str:
        return self._digest(domain) if self._secret else domain

    def ident(self, address: str) -> str:
        return self._digest(address) if self._secret else address

    def record(self, domain: str, address: str) -> str:
        return f"{PREFIX}:{{{self.tag(domain)}}}:a:{self.ident(address)}"

    def index(self, domain: str) -> str:
        return f"{PREFIX}:{{{self.tag(domain)}}}:index"

    def facts(self, domain: str) -> str:
        return f"{PREFIX}:{{{self.tag(domain)}}}:facts"

    def lock(self, domain: str, address: str) -> str:
        return f"{PREFIX}:{{{self.tag(domain)}}}:lock:{self.ident(address)}"

    def rate(self, domain: str) -> str:
        return f"{PREFIX}:{{{self.tag(domain)}}}:rate"

    def slots(self, name: str) -> str:
        return f"{PREFIX}:{{slots:{name}}}:holders"

    def destination(self, name: str) -> str:
        """A budget per MX address, network or provider; all in one Cluster slot, so one
        script reserves from several at once."""
        return f"{PREFIX}:{{destinations}}:{self.ident(name)}"

    def egress(self, name: str, what: str) -> str:
        """One egress's budget, rest or refusals: shared by every process using it."""
        return f"{PREFIX}:{{egress:{name}}}:{what}"

    def cooling(self, ip: str) -> str:
        return f"{PREFIX}:{{cooldown}}:ip:{ip}"

    @property
    def cooling_index(self) -> str:
        return f"{PREFIX}:{{cooldown}}:index"

    @property
    def cooling_pattern(self) -> str:
        return f"{PREFIX}:{{cooldown}}:ip:*"

    @property
    def record_pattern(self) -> str:
        return f"{PREFIX}:{{*}}:a:*"

    @property
    def facts_pattern(self) -> str:
        return f"{PREFIX}:{{*}}:facts"

    @property
    def all_pattern(self) -> str:
        return f"{PREFIX}:{{*}}:*"

    def conceal(self, text: str, address: str) -> str:
        if not self.conceals:
            return text
        escaped = json.dumps(address)[1:-1]
        return re.sub(re.escape(escaped), ADDRESS_PLACEHOLDER, text, flags=re.IGNORECASE)

    def reveal(self, text: str, address: str) -> str:
        if not self.conceals:
            return text
        return text.replace(ADDRESS_PLACEHOLDER, json.dumps(address)[1:-1])


class RedisHealth:
    """Up or down, with one log line per change of state."""

    def __init__(self, description: str, retry_interval: float) -> None:
        self._description = description
        self._retry_interval = retry_interval
        self._down_until: float | None = None

    @property
    def is_down(self) -> bool:
        return self._down_until is not None

    def should_try(self) -> bool:
        """While down, let one caller per interval probe; everyone else falls back at once."""
        if self._down_until is None:
            return True
        now = time.monotonic()
        if now < self._down_until:
            return False
        self._down_until = now + self._retry_interval
        return True

    def failed(self, error: BaseException) -> None:
        if self._down_until is None:
            log.warning(
                "redis at %s unavailable (%s); using the local cache and limits until it returns",
                self._description,
                str(error) or type(error).__name__,
            )
        self._down_until = time.monotonic() + self._retry_interval

    def succeeded(self) -> None:
        if self._down_until is not None:
            log.warning("redis at %s is back; sharing the cache and limits again",
                        self._description)
        self._down_until = None


class RedisLink:
    def __init__(self, location: CacheLocation, config: CacheConfig) -> None:
        self.description = describe(location)
        self.client = make_client(location, config.redis_timeout)
        self.is_cluster = isinstance(self.client, RedisCluster)
        self.keys = KeyScheme(config.hmac_key)
        self.health = RedisHealth(self.description, config.redis_retry_interval)
        self._call_timeout = config.redis_timeout * CALL_TIMEOUTS
        self._in_flight = asyncio.Semaphore(MAX_COMMANDS_IN_FLIGHT)
        self._ready = not self.is_cluster
        self._readying = asyncio.Lock()
        self._bad_keys = OncePerKey()

    async def _get_ready(self) -> None:
        """Learn the Cluster's slots once, before any command: redis-py's asyncio Cluster
        client drops connections when many first commands race to do it."""
        async with self._readying, asyncio.timeout(self._call_timeout):
            if not self._ready:
                assert isinstance(self.client, RedisCluster)
                await self.client.initialize()
                self._ready = True

    def _refused(self, key: str, error: BaseException) -> None:
        if self._bad_keys.first(key or first_line(error)):
            log.warning("redis at %s refused a command on %s (%s); answered locally, redis "
                        "stays in use", self.description, key or "a key",
                        first_line(error))

    async def call(
        self,
        operation: Callable[[], Awaitable[T]],
        fallback: Callable[[], Awaitable[T]],
        key: str = "",
    ) -> T:
        """Redis if it is up, else (or on failure) the local fallback; never waits long.
        An error about one key (`key`, for the log) sends this call to the fallback without
        marking Redis down: one bad key must not stop the fleet from sharing limits."""
        if not self.health.should_try():
            return await fallback()
        probing = self.health.is_down
        async with self._in_flight:
            if self.health.is_down and not probing:
                answered = False  # Redis failed while this call queued: do not pile on
            else:
                try:
                    if not self._ready:
                        await self._get_ready()
                    result = await operation()
                    answered = True
                except REDIS_FAILURES as exc:
                    if is_per_key(exc):
                        self.health.succeeded()
                        self._refused(key, exc)
                    else:
                        self.health.failed(exc)
                    answered = False
        if not answered:
            return await fallback()
        self.health.succeeded()
        return result

    async def strict(self, operation: Callable[[], Awaitable[T]]) -> T:
        """For the CLI: Redis or a one-line CacheError, no fallback; socket timeouts bound it."""
        try:
            if not self._ready:
                await self._get_ready()
            return await operation()
        except REDIS_FAILURES as exc:
            raise CacheError(
                f"cannot use redis at {self.description}: {str(exc) or type(exc).__name__}"
            ) from None

    async def aclose(self) -> None:
        await self.client.aclose()
