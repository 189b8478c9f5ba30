"""The DNS questions the doctor asks: addresses, PTR names and blocklist entries."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Protocol

import dns.asyncresolver
import dns.exception
import dns.name
import dns.resolver
import dns.reversename

from cbv.config import DnsConfig
from cbv.dns.resolver import DnsStatus, stub_resolver


@dataclass(frozen=True, slots=True)
class Lookup:
    status: DnsStatus
    values: tuple[str, ...] = ()
    detail: str = ""


class DoctorDns(Protocol):
    async def addresses(self, name: str) -> Lookup:
        """A and AAAA records of `name`."""
        ...

    async def names(self, ip: str) -> Lookup:
        """PTR records of `ip`, lower case without the trailing dot."""
        ...

    async def listing(self, ip: str, zone: str) -> Lookup:
        """A records of `ip` in blocklist `zone`, asked the standard reversed-address way."""
        ...


def dnsbl_name(ip: str, zone: str) -> str:
    """192.0.2.1 in zen.spamhaus.org is 1.2.0.192.zen.spamhaus.org; IPv6 goes by nibbles."""
    reversed_ip = dns.reversename.from_address(str(ipaddress.ip_address(ip)))
    labels = reversed_ip.labels[:-3]  # drop in-addr.arpa. / ip6.arpa.
    return ".".join(label.decode() for label in labels) + f".{zone}"


class DnspythonDoctorDns:
    """Asks the nameservers of [dns], as callouts do; nothing is cached."""

    def __init__(self, config: DnsConfig) -> None:
        self._resolver = stub_resolver(config)

    async def _query(self, name: str, rdtype: str) -> Lookup:
        try:
            answer = await self._resolver.resolve(
                dns.name.from_text(name), rdtype, search=False, raise_on_no_answer=False)
        except (dns.resolver.NXDOMAIN, dns.resolver.YXDOMAIN):
            return Lookup(DnsStatus.NXDOMAIN, detail=f"{name}: NXDOMAIN")
        except dns.exception.DNSException as exc:
            return Lookup(DnsStatus.TEMPFAIL,
                          detail=f"{name} {rdtype}: {exc or type(exc).__name__}")
        if answer.rrset is None:
            return Lookup(DnsStatus.NODATA, detail=f"{name}: no {rdtype} records")
        return Lookup(DnsStatus.OK, tuple(
            rr.to_text().lower().rstrip(".") for rr in answer.rrset))

    async def addresses(self, name: str) -> Lookup:
        v4, v6 = await self._query(name, "A"), await self._query(name, "AAAA")
        values = v4.values + v6.values
        if values:
            return Lookup(DnsStatus.OK, values)
        worst = v4 if v4.status is DnsStatus.TEMPFAIL else v6
        return Lookup(worst.status, detail=worst.detail or v4.detail)

    async def names(self, ip: str) -> Lookup:
        return await self._query(dns.reversename.from_address(ip).to_text(), "PTR")

    async def listing(self, ip: str, zone: str) -> Lookup:
        return await self._query(dnsbl_name(ip, zone), "A")
