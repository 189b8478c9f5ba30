"""The resolver against FakeDNS: statuses, TTL-honouring cache, coalescing, no search list."""

from __future__ import annotations

import asyncio
import time

import pytest

from cbv.config import DnsConfig
from cbv.dns.resolver import DnspythonResolver, DnsStatus, MxRecord
from cbv.testing import FakeDNS
from tests.cache.helpers import FakeClock


def resolver(dns: FakeDNS, clock: FakeClock | None = None, **overrides: object
             ) -> DnspythonResolver:
    return DnspythonResolver(DnsConfig(nameservers=[dns.nameserver], timeout=1.0,
                                       **overrides),  # type: ignore[arg-type]
                             clock or FakeClock())


async def test_mx_statuses(fake_dns: FakeDNS) -> None:
    fake_dns.add_mx("mail.test", [(20, "b.mail.test"), (10, "A.Mail.Test")])
    fake_dns.add_null_mx("null.test")
    fake_dns.add_a("nomx.test", "127.0.0.9")
    fake_dns.set_nxdomain("gone.test")
    fake_dns.set_servfail("broken.test")
    r = resolver(fake_dns)
    answer = await r.mx("mail.test")
    assert answer.status is DnsStatus.OK
    assert sorted(answer.records, key=lambda rec: rec.preference) == [
        MxRecord(10, "a.mail.test"), MxRecord(20, "b.mail.test")]
    assert (await r.mx("null.test")).is_null_mx
    assert (await r.mx("nomx.test")).status is DnsStatus.NODATA
    assert (await r.mx("gone.test")).status is DnsStatus.NXDOMAIN
    assert (await r.mx("broken.test")).status is DnsStatus.TEMPFAIL


async def test_addresses_both_families(fake_dns: FakeDNS) -> None:
    fake_dns.add_a("h.test", "127.0.0.5")
    fake_dns.add_aaaa("h.test", "::1")
    answer = await resolver(fake_dns).addresses("h.test")
    assert answer.status is DnsStatus.OK
    assert set(answer.addresses) == {"127.0.0.5", "::1"}


async def test_answers_are_cached_for_their_ttl(fake_dns: FakeDNS) -> None:
    fake_dns.add_mx("short.test", [(10, "mx.short.test")], ttl=60)
    fake_dns.add_mx("long.test", [(10, "mx.long.test")], ttl=300)
    clock = FakeClock()
    r = resolver(fake_dns, clock)
    for _ in range(3):
        await r.mx("short.test")
        await r.mx("long.test")
    clock.advance(59.9)
    await r.mx("short.test")
    assert fake_dns.query_count("short.test", "MX") == 1
    assert fake_dns.query_count("long.test", "MX") == 1
    clock.advance(0.1)
    await r.mx("short.test")
    await r.mx("long.test")
    assert fake_dns.query_count("short.test", "MX") == 2
    assert fake_dns.query_count("long.test", "MX") == 1


async def test_negative_answers_last_the_shorter_of_their_ttl_and_negative_ttl(
    fake_dns: FakeDNS,
) -> None:
    fake_dns.set_nxdomain("gone.test")
    clock = FakeClock()
    r = resolver(fake_dns, clock, negative_ttl=30)
    await r.mx("gone.test")
    clock.advance(29.9)
    await r.mx("gone.test")
    assert fake_dns.query_count("gone.test", "MX") == 1
    clock.advance(0.1)
    await r.mx("gone.test")
    assert fake_dns.query_count("gone.test", "MX") == 2


async def test_negative_answers_cached_tempfail_not(fake_dns: FakeDNS) -> None:
    fake_dns.set_nxdomain("gone.test")
    fake_dns.set_servfail("broken.test")
    r = resolver(fake_dns)
    for _ in range(3):
        await r.mx("gone.test")
        await r.mx("broken.test")
    assert fake_dns.query_count("gone.test", "MX") == 1
    assert fake_dns.query_count("broken.test", "MX") == 3


async def test_concurrent_identical_lookups_share_one_query(fake_dns: FakeDNS) -> None:
    fake_dns.add_mx("busy.test", [(10, "mx.busy.test")])
    fake_dns.set_delay("busy.test", 0.2)
    r = resolver(fake_dns)
    answers = await asyncio.gather(*(r.mx("busy.test") for _ in range(50)))
    assert {a.status for a in answers} == {DnsStatus.OK}
    assert fake_dns.query_count("busy.test", "MX") == 1


async def test_silence_is_a_bounded_tempfail(fake_dns: FakeDNS) -> None:
    fake_dns.set_timeout("silent.test")
    started = time.monotonic()
    answer = await resolver(fake_dns).mx("silent.test")
    assert answer.status is DnsStatus.TEMPFAIL
    assert time.monotonic() - started < 5


async def test_single_label_names_are_not_searched(fake_dns: FakeDNS) -> None:
    await resolver(fake_dns).mx("localdomain")
    assert fake_dns.queries
    assert {name.rstrip(".") for name, _ in fake_dns.queries} == {"localdomain"}


@pytest.mark.parametrize("size", [0, 2])
async def test_cache_size_bounds_memory(fake_dns: FakeDNS, size: int) -> None:
    for n in range(4):
        fake_dns.add_mx(f"d{n}.test", [(10, "mx.test")])
    r = resolver(fake_dns, cache_size=size)
    for n in range(4):
        await r.mx(f"d{n}.test")
    await r.mx("d0.test")
    assert fake_dns.query_count("d0.test", "MX") == 2
