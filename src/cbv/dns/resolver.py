"""DNS answers the callout needs, behind an interface the tests and benchmark can swap."""

from __future__ import annotations

import asyncio
import secrets
import socket
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Generic, Protocol, TypeVar

import dns.asyncresolver
import dns.exception
import dns.name
import dns.nameserver
import dns.rdatatype
import dns.resolver

from cbv.config import DnsConfig
from cbv.protocol import dns_wire


class DnsStatus(StrEnum):
    OK = "ok"
    NXDOMAIN = "nxdomain"
    NODATA = "nodata"
    TEMPFAIL = "tempfail"


@dataclass(frozen=True, slots=True)
class MxRecord:
    preference: int
    exchange: str  # lower case, no trailing dot; "" is the root (RFC 7505 null MX)


@dataclass(frozen=True, slots=True)
class MxAnswer:
    status: DnsStatus
    records: tuple[MxRecord, ...] = ()
    ttl: int = 0
    detail: str = ""

    @property
    def is_null_mx(self) -> bool:
        return len(self.records) == 1 and self.records[0].exchange == ""


@dataclass(frozen=True, slots=True)
class AddressAnswer:
    status: DnsStatus
    addresses: tuple[str, ...] = ()
    ttl: int = 0
    detail: str = ""


class Resolver(Protocol):
    async def mx(self, domain: str) -> MxAnswer: ...

    async def addresses_of(self, hosts: Sequence[str]) -> list[AddressAnswer]:
        """Each host's addresses, in order; the lookups not answered from the cache run
        side by side."""
        ...

    def cached_mx(self, domain: str) -> MxAnswer | None:
        """The answer `mx(domain)` would give from the cache, without asking; None when it
        is not there (never cached, or its TTL ran out). The same object until then."""
        ...

    def cached_addresses(self, host: str) -> AddressAnswer | None:
        """As `cached_mx`, for a host's addresses."""
        ...


Answer = TypeVar("Answer", MxAnswer, AddressAnswer)
Clock = Callable[[], float]


class TtlCache(Generic[Answer]):
    """Answers kept for their TTL, least recently used dropped first; identical
    lookups in flight share one query. `clock` is the engine's, so tests move time on
    instead of waiting for TTLs to run out. A plain ordered dict of (answer, expiry): every
    callout looks here two or three times."""

    def __init__(self, size: int, negative_ttl: int, clock: Clock = time.monotonic) -> None:
        self._size = size
        self._negative_ttl = negative_ttl
        self._clock = clock
        self._entries: OrderedDict[str, tuple[Answer, float]] = OrderedDict()
        self._inflight: dict[str, asyncio.Future[Answer]] = {}

    def _expiry(self, answer: Answer, now: float) -> float:
        """When `answer` goes; no later than now (so never kept) for a temporary failure."""
        if answer.status is DnsStatus.TEMPFAIL:
            return now
        if answer.status is DnsStatus.OK:
            return now + answer.ttl
        return now + min(answer.ttl, self._negative_ttl)

    def cached(self, key: str) -> Answer | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry[1] <= self._clock():
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return entry[0]

    def _keep(self, key: str, answer: Answer) -> None:
        now = self._clock()
        expires = self._expiry(answer, now)
        if self._size <= 0 or expires <= now:
            return
        self._entries[key] = (answer, expires)
        self._entries.move_to_end(key)
        if len(self._entries) > self._size:
            self._entries.popitem(last=False)

    async def get(self, key: str, lookup: Callable[[str], Awaitable[Answer]]) -> Answer:
        """The answer for `key`, from `lookup(key)` on a miss (a method, not a closure
        built for every callout that finds the answer here)."""
        cached = self.cached(key)
        if cached is not None:
            return cached
        pending = self._inflight.get(key)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[Answer] = asyncio.get_running_loop().create_future()
        self._inflight[key] = future
        try:
            answer = await lookup(key)
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()
            raise
        else:
            future.set_result(answer)
            self._keep(key, answer)
            return answer
        finally:
            del self._inflight[key]


def _absolute(name: str) -> dns.name.Name:
    # Absolute names: the search list of /etc/resolv.conf must never apply.
    return dns.name.from_text(name if name.endswith(".") else name + ".")


def _exchange_name(name: dns.name.Name) -> str:
    """The root ("." in RFC 7505 null MX) becomes ""; others lower case without the dot."""
    if name == dns.name.root:
        return ""
    return name.to_text(omit_final_dot=True).lower()


def _negative_ttl(answer: dns.resolver.Answer | None, default: int) -> int:
    if answer is None:
        return default
    for rrset in answer.response.authority:
        if rrset.rdtype == dns.rdatatype.SOA:
            return int(min(rrset.ttl, rrset[0].minimum))
    return default


def stub_resolver(config: DnsConfig) -> dns.asyncresolver.Resolver:
    """dnspython's async stub resolver on `config`'s nameservers, never the search list."""
    servers = config.nameserver_addresses()
    resolver = dns.asyncresolver.Resolver(configure=not servers)
    if servers:
        resolver.nameservers = [dns.nameserver.Do53Nameserver(host, port) for host, port in servers]
    resolver.lifetime = config.timeout
    resolver.timeout = min(config.timeout, 2.0)
    resolver.use_search_by_default = False
    return resolver


class DnspythonResolver:
    """dnspython's async stub resolver with our cache, never the search list."""

    def __init__(self, config: DnsConfig, clock: Clock = time.monotonic) -> None:
        self._resolver = stub_resolver(config)
        servers = config.nameserver_addresses()
        self._server = servers[0] if servers else None  # the system's: dnspython reads them
        self._more_servers = len(servers) > 1
        self._lifetime = self._resolver.lifetime
        self._attempt_timeout = self._resolver.timeout
        self._negative_default = config.negative_ttl
        self._mx_cache: TtlCache[MxAnswer] = TtlCache(
            config.cache_size, config.negative_ttl, clock
        )
        self._address_cache: TtlCache[AddressAnswer] = TtlCache(
            config.cache_size, config.negative_ttl, clock
        )

    async def mx(self, domain: str) -> MxAnswer:
        return await self._mx_cache.get(domain, self._query_mx)

    def cached_mx(self, domain: str) -> MxAnswer | None:
        return self._mx_cache.cached(domain)

    def cached_addresses(self, host: str) -> AddressAnswer | None:
        return self._address_cache.cached(host)

    async def addresses(self, host: str) -> AddressAnswer:
        return await self._address_cache.get(host, self._query_addresses)

    async def addresses_of(self, hosts: Sequence[str]) -> list[AddressAnswer]:
        """A task per lookup only for hosts the cache cannot answer (nearly every callout
        finds its MX hosts' addresses there). No comprehension over a local: each would
        make that local a cell object for every call."""
        found: dict[str, AddressAnswer] = {}
        missing: dict[str, None] = {}
        for host in hosts:
            cached = self._address_cache.cached(host)
            if cached is None:
                missing[host] = None
            else:
                found[host] = cached
        if len(missing) == 1:
            [host] = missing
            found[host] = await self.addresses(host)
        elif missing:
            answers = await asyncio.gather(*map(self.addresses, missing))
            found.update(zip(missing, answers, strict=True))
        return list(map(found.__getitem__, hosts))

    async def _query(self, name: str, rdtype: str) -> _Found:
        """Asked of the first nameserver over UDP by our own codec; dnspython for the rest
        (another nameserver, TCP, aliases, failures), within what is left of the timeout."""
        started = time.monotonic()
        if self._server is not None:
            found = await self._query_plain(self._server, name, rdtype)
            if found is not None:
                return found
        left = self._lifetime - (time.monotonic() - started)
        if left <= 0:
            return _Found(DnsStatus.TEMPFAIL, f"{name} {rdtype}: DNS timeout")
        return await self._query_dnspython(name, rdtype, left)

    async def _query_plain(
        self, server: tuple[str, int], name: str, rdtype: str
    ) -> _Found | None:
        qtype = dns_wire.QTYPES[rdtype]
        ident = secrets.randbits(16)
        loop = asyncio.get_running_loop()
        try:
            query = dns_wire.encode_query(name.removesuffix("."), qtype, ident)
            family = socket.AF_INET6 if ":" in server[0] else socket.AF_INET
            with socket.socket(family, socket.SOCK_DGRAM) as sock:
                sock.setblocking(False)
                sock.connect(server)  # datagrams from anyone else never reach us
                await loop.sock_sendall(sock, query)
                async with asyncio.timeout(self._attempt_timeout):
                    while True:
                        data = await loop.sock_recv(sock, 65_535)
                        if data[:2] == query[:2]:  # not a stray reply to an older query
                            break
            reply = dns_wire.decode_reply(data, ident, name.removesuffix("."), qtype)
        except (dns_wire.NotPlain, OSError, TimeoutError):
            return None
        if reply.rcode == dns_wire.NXDOMAIN:
            return _Found(DnsStatus.NXDOMAIN, f"{name}: NXDOMAIN", ttl=self._negative_default)
        if reply.rcode == dns_wire.YXDOMAIN:
            return _Found(DnsStatus.NXDOMAIN, f"{name}: name too long",
                          ttl=self._negative_default)
        if reply.rcode != dns_wire.NOERROR:  # SERVFAIL, REFUSED...
            if self._more_servers:
                return None  # dnspython goes on to the other nameservers
            return _Found(DnsStatus.TEMPFAIL, f"{name} {rdtype}: SERVFAIL")
        if not reply.records:
            ttl = reply.soa_ttl if reply.soa_ttl is not None else self._negative_default
            return _Found(DnsStatus.NODATA, f"{name}: no {rdtype} records", ttl=ttl)
        return _Found(DnsStatus.OK, ttl=reply.ttl, records=reply.records)

    async def _query_dnspython(self, name: str, rdtype: str, lifetime: float) -> _Found:
        try:
            answer = await self._resolver.resolve(
                _absolute(name), rdtype, search=False, raise_on_no_answer=False,
                lifetime=lifetime,
            )
        except dns.resolver.NXDOMAIN:
            return _Found(DnsStatus.NXDOMAIN, f"{name}: NXDOMAIN", ttl=self._negative_default)
        except dns.resolver.YXDOMAIN:
            return _Found(DnsStatus.NXDOMAIN, f"{name}: name too long",
                          ttl=self._negative_default)
        except dns.resolver.NoNameservers:
            return _Found(DnsStatus.TEMPFAIL, f"{name} {rdtype}: SERVFAIL")
        except dns.exception.Timeout:
            return _Found(DnsStatus.TEMPFAIL, f"{name} {rdtype}: DNS timeout")
        except dns.exception.DNSException as exc:
            return _Found(DnsStatus.TEMPFAIL, f"{name} {rdtype}: {exc}")
        if answer.rrset is None:
            return _Found(DnsStatus.NODATA, f"{name}: no {rdtype} records",
                          ttl=_negative_ttl(answer, self._negative_default))
        records: tuple[tuple[int, str] | str, ...] = tuple(
            (rr.preference, _exchange_name(rr.exchange)) if rdtype == "MX" else rr.address
            for rr in answer.rrset
        )
        return _Found(DnsStatus.OK, ttl=answer.rrset.ttl, records=records)

    async def _query_mx(self, domain: str) -> MxAnswer:
        found = await self._query(domain, "MX")
        if found.status is not DnsStatus.OK:
            return MxAnswer(found.status, ttl=found.ttl, detail=found.detail)
        records = tuple(MxRecord(*record) for record in found.records if isinstance(record, tuple))
        return MxAnswer(DnsStatus.OK, records, found.ttl)

    async def _query_addresses(self, host: str) -> AddressAnswer:
        results = await asyncio.gather(self._query(host, "A"), self._query(host, "AAAA"))
        addresses = [record for found in results if found.status is DnsStatus.OK
                     for record in found.records if isinstance(record, str)]
        if addresses:
            ttl = min(found.ttl for found in results if found.status is DnsStatus.OK)
            return AddressAnswer(DnsStatus.OK, tuple(addresses), ttl)
        statuses = [found.status for found in results]
        details = "; ".join(found.detail for found in results if found.detail)
        if DnsStatus.TEMPFAIL in statuses:
            return AddressAnswer(DnsStatus.TEMPFAIL, detail=details)
        ttl = min(found.ttl for found in results)
        if all(status is DnsStatus.NXDOMAIN for status in statuses):
            return AddressAnswer(DnsStatus.NXDOMAIN, ttl=ttl, detail=details)
        return AddressAnswer(DnsStatus.NODATA, ttl=ttl, detail=details)


@dataclass(frozen=True, slots=True)
class _Found:
    """One lookup's outcome, however it was made."""

    status: DnsStatus
    detail: str = ""
    ttl: int = 0  # the records' TTL, or how long a negative answer holds
    records: tuple[tuple[int, str] | str, ...] = ()  # (preference, exchange) for MX
