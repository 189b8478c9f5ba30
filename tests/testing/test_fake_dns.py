import asyncio
import socket
import time

import dns.asyncresolver
import dns.exception
import dns.flags
import dns.message
import dns.nameserver
import dns.query
import dns.rcode
import dns.rdatatype
import dns.resolver
import pytest

from cbv.testing import FakeDNS


def resolver(server: FakeDNS, lifetime: float = 2.0) -> dns.resolver.Resolver:
    res = dns.resolver.Resolver(configure=False)
    res.nameservers = [dns.nameserver.Do53Nameserver(server.host, server.port)]
    res.lifetime = lifetime
    return res


def async_resolver(server: FakeDNS) -> dns.asyncresolver.Resolver:
    res = dns.asyncresolver.Resolver(configure=False)
    res.nameservers = [dns.nameserver.Do53Nameserver(server.host, server.port)]
    res.lifetime = 5.0
    return res


def ask(server: FakeDNS, name: str, rtype: str, tcp: bool = False) -> dns.message.Message:
    query = dns.message.make_query(name, rtype)
    if tcp:
        return dns.query.tcp(query, server.host, port=server.port, timeout=2)
    return dns.query.udp(query, server.host, port=server.port, timeout=2)


def test_mx_with_preferences_and_ttl(fake_dns: FakeDNS) -> None:
    fake_dns.add_mx("example.test", [(20, "mx2.example.test"), (10, "mx1.example.test.")], ttl=123)
    answer = resolver(fake_dns).resolve("example.test", "MX")
    assert sorted((r.preference, r.exchange.to_text()) for r in answer) == [
        (10, "mx1.example.test."),
        (20, "mx2.example.test."),
    ]
    assert answer.rrset is not None
    assert answer.rrset.ttl == 123


def test_address_and_text_records(fake_dns: FakeDNS) -> None:
    fake_dns.add_a("mx.example.test", "127.0.0.2", "127.0.0.3")
    fake_dns.add_aaaa("mx.example.test", "::1")
    fake_dns.add_txt("example.test", "v=spf1 " + "a" * 300)
    res = resolver(fake_dns)
    assert sorted(r.address for r in res.resolve("mx.example.test", "A")) == [
        "127.0.0.2",
        "127.0.0.3",
    ]
    assert [r.address for r in res.resolve("mx.example.test", "AAAA")] == ["::1"]
    [txt] = res.resolve("example.test", "TXT")
    assert b"".join(txt.strings) == b"v=spf1 " + b"a" * 300


def test_generic_record(fake_dns: FakeDNS) -> None:
    fake_dns.add_record("_25._tcp.mx.example.test", "tlsa", "3 1 1 " + "ab" * 32, ttl=77)
    fake_dns.add_record("_smtp._tcp.example.test", "SRV", "0 5 25 mx.example.test")
    res = resolver(fake_dns)
    [tlsa] = res.resolve("_25._tcp.mx.example.test", "TLSA")
    assert (tlsa.usage, tlsa.selector, tlsa.mtype, tlsa.cert) == (3, 1, 1, b"\xab" * 32)
    [srv] = res.resolve("_smtp._tcp.example.test", "SRV")
    assert srv.target.to_text() == "mx.example.test."


def test_null_mx(fake_dns: FakeDNS) -> None:
    fake_dns.add_null_mx("nomail.test")
    [mx] = resolver(fake_dns).resolve("nomail.test", "MX")
    assert (mx.preference, mx.exchange.to_text()) == (0, ".")


def test_unknown_name_is_nxdomain_with_soa(fake_dns: FakeDNS) -> None:
    with pytest.raises(dns.resolver.NXDOMAIN):
        resolver(fake_dns).resolve("nowhere.test", "MX")
    response = ask(fake_dns, "nowhere.test", "MX")
    assert response.authority[0].rdtype == dns.rdatatype.SOA


@pytest.mark.parametrize("name", [".", "test", "x" * 63 + ".test"])
def test_odd_names_still_get_a_negative_answer(fake_dns: FakeDNS, name: str) -> None:
    response = ask(fake_dns, name, "A")
    assert response.rcode() == dns.rcode.NXDOMAIN
    assert response.authority[0].rdtype == dns.rdatatype.SOA


def test_forced_nxdomain_hides_records(fake_dns: FakeDNS) -> None:
    fake_dns.add_a("gone.test", "127.0.0.9")
    fake_dns.set_nxdomain("gone.test")
    assert ask(fake_dns, "gone.test", "A").rcode() == dns.rcode.NXDOMAIN


def test_existing_name_without_the_type_is_nodata(fake_dns: FakeDNS) -> None:
    fake_dns.add_a("example.test", "127.0.0.2")
    with pytest.raises(dns.resolver.NoAnswer):
        resolver(fake_dns).resolve("example.test", "MX")
    response = ask(fake_dns, "example.test", "MX")
    assert response.rcode() == dns.rcode.NOERROR
    assert response.answer == []
    [soa] = response.authority
    assert soa.rdtype == dns.rdatatype.SOA
    assert soa.ttl == 60
    assert soa[0].minimum == 60


def test_servfail(fake_dns: FakeDNS) -> None:
    fake_dns.add_mx("broken.test", [(10, "mx.broken.test")])
    fake_dns.set_servfail("broken.test")
    assert ask(fake_dns, "broken.test", "MX").rcode() == dns.rcode.SERVFAIL
    with pytest.raises(dns.resolver.NoNameservers):
        resolver(fake_dns).resolve("broken.test", "MX")


def test_timeout_drops_the_query(fake_dns: FakeDNS) -> None:
    fake_dns.set_timeout("slow.test")
    with pytest.raises(dns.resolver.LifetimeTimeout):
        resolver(fake_dns, lifetime=0.3).resolve("slow.test", "MX")
    query = dns.message.make_query("slow.test", "MX")
    with pytest.raises(dns.exception.Timeout):
        dns.query.tcp(query, fake_dns.host, port=fake_dns.port, timeout=0.2)
    assert fake_dns.query_count("slow.test") >= 2


def test_delay(fake_dns: FakeDNS) -> None:
    fake_dns.add_a("lazy.test", "127.0.0.2")
    fake_dns.set_delay("lazy.test", 0.2)
    started = time.monotonic()
    resolver(fake_dns).resolve("lazy.test", "A")
    assert time.monotonic() - started >= 0.2


def test_cname_chain_is_followed(fake_dns: FakeDNS) -> None:
    fake_dns.add_cname("alias.test", "middle.test")
    fake_dns.add_cname("middle.test", "mail.host.test")
    fake_dns.add_mx("mail.host.test", [(5, "mx.host.test")])
    response = ask(fake_dns, "alias.test", "MX")
    assert [rrset.rdtype for rrset in response.answer] == [
        dns.rdatatype.CNAME,
        dns.rdatatype.CNAME,
        dns.rdatatype.MX,
    ]
    answer = resolver(fake_dns).resolve("alias.test", "MX")
    assert answer.canonical_name.to_text() == "mail.host.test."
    assert [r.exchange.to_text() for r in answer] == ["mx.host.test."]
    assert fake_dns.query_count("middle.test") == 0  # resolved server-side, like a recursor


def test_cname_to_missing_target_is_nxdomain(fake_dns: FakeDNS) -> None:
    fake_dns.add_cname("dangling.test", "void.test")
    response = ask(fake_dns, "dangling.test", "A")
    assert response.rcode() == dns.rcode.NXDOMAIN
    assert [rrset.rdtype for rrset in response.answer] == [dns.rdatatype.CNAME]


def test_cname_loop_is_servfail(fake_dns: FakeDNS) -> None:
    fake_dns.add_cname("ping.test", "pong.test")
    fake_dns.add_cname("pong.test", "ping.test")
    assert ask(fake_dns, "ping.test", "A").rcode() == dns.rcode.SERVFAIL


def test_names_are_case_insensitive_and_dot_optional(fake_dns: FakeDNS) -> None:
    fake_dns.add_a("Mixed.Example.TEST.", "127.0.0.2")
    response = ask(fake_dns, "mixed.example.test", "A")
    assert response.answer[0].name.to_text() == "mixed.example.test."
    assert fake_dns.query_count("MIXED.example.test.", "a") == 1


def test_tcp(fake_dns: FakeDNS) -> None:
    fake_dns.add_mx("example.test", [(10, "mx.example.test")])
    response = ask(fake_dns, "example.test", "MX", tcp=True)
    assert response.answer[0][0].exchange.to_text() == "mx.example.test."


def test_oversize_udp_answer_is_truncated_and_retried_over_tcp(fake_dns: FakeDNS) -> None:
    for i in range(10):
        fake_dns.add_txt("big.test", f"{i}" * 200)
    assert ask(fake_dns, "big.test", "TXT").flags & dns.flags.TC
    answer = resolver(fake_dns).resolve("big.test", "TXT")
    assert len(answer) == 10
    assert fake_dns.query_count("big.test", "TXT") == 3


def test_garbage_is_ignored(fake_dns: FakeDNS) -> None:
    fake_dns.add_a("ok.test", "127.0.0.2")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.sendto(b"\x00\x01garbage", (fake_dns.host, fake_dns.port))
    assert ask(fake_dns, "ok.test", "A").rcode() == dns.rcode.NOERROR


def test_query_log_remove_and_clear(fake_dns: FakeDNS) -> None:
    fake_dns.add_a("a.test", "127.0.0.2")
    fake_dns.add_a("b.test", "127.0.0.3")
    res = resolver(fake_dns)
    res.resolve("A.test.", "A")
    fake_dns.remove("a.test")
    with pytest.raises(dns.resolver.NXDOMAIN):
        res.resolve("a.test", "A")
    res.resolve("b.test", "A")
    fake_dns.clear()
    with pytest.raises(dns.resolver.NXDOMAIN):
        res.resolve("b.test", "A")
    assert fake_dns.queries == [("a.test", "A"), ("a.test", "A"), ("b.test", "A"), ("b.test", "A")]
    assert fake_dns.query_count() == 4
    assert fake_dns.query_count(rtype="MX") == 0


def test_lifecycle_and_nameserver() -> None:
    with FakeDNS() as server:
        assert server.nameserver == f"127.0.0.1:{server.port}"
        server.add_a("x.test", "127.0.0.2")
        assert ask(server, "x.test", "A").rcode() == dns.rcode.NOERROR
    with pytest.raises(ConnectionRefusedError):
        ask(server, "x.test", "A", tcp=True)


async def test_async_resolver_from_another_loop(fake_dns: FakeDNS) -> None:
    fake_dns.add_mx("example.test", [(10, "mx.example.test")])
    answer = await async_resolver(fake_dns).resolve("example.test", "MX")
    assert answer[0].exchange.to_text() == "mx.example.test."


@pytest.mark.slow
async def test_keeps_up_with_a_benchmark_load(fake_dns: FakeDNS) -> None:
    domains = 2000
    for i in range(domains):
        fake_dns.add_mx(f"d{i}.test", [(10, f"mx.d{i}.test")])
        fake_dns.add_a(f"mx.d{i}.test", "127.0.0.2")
    res = async_resolver(fake_dns)
    gate = asyncio.Semaphore(200)

    async def lookup(name: str, rtype: str) -> int:
        async with gate:
            return len(await res.resolve(name, rtype))

    started = time.monotonic()
    counts = await asyncio.gather(
        *(lookup(f"d{i}.test", "MX") for i in range(domains)),
        *(lookup(f"mx.d{i}.test", "A") for i in range(domains)),
    )
    elapsed = time.monotonic() - started
    assert counts == [1] * (2 * domains)
    assert elapsed < 10, f"{2 * domains} lookups took {elapsed:.1f}s"
