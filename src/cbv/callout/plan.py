"""Where a callout goes: routes, address literals or MX (RFC 5321 section 5.1)."""

from __future__ import annotations

import functools
import ipaddress
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from cbv.callout.dialogue import Outcome
from cbv.callout.networks import TargetPolicy
from cbv.config import CalloutConfig
from cbv.dns.resolver import AddressAnswer, DnsStatus, MxAnswer, MxRecord, Resolver
from cbv.model import Reason, Stage

ADDRESSES_PER_HOST = 2  # the first IPv4 and the first IPv6 address of each host
PLANS_REMEMBERED = 4096  # domains whose plan is kept while their DNS answers are


@dataclass(slots=True, unsafe_hash=True)
class Target:
    host: Final[str]
    ip: Final[str]
    port: Final[int]


@dataclass(slots=True)
class Plan:
    targets: Final[tuple[Target, ...]] = ()
    failure: Final[Outcome | None] = None


def _dns_failure(reason: Reason, detail: str) -> Plan:
    return Plan(failure=Outcome(reason, Stage.DNS, detail=detail))


@functools.lru_cache(maxsize=4096)
def _is_ip_literal(host: str) -> bool:
    """MX host names repeat from callout to callout; ip_address() raises three exceptions
    for each name it rejects."""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


@dataclass(frozen=True, slots=True)
class _Planned:
    """A plan, with the cached DNS answers it was made from."""

    mx: MxAnswer
    hosts: tuple[tuple[str, AddressAnswer], ...]
    plan: Plan


def _distinct_preferences(records: Sequence[MxRecord]) -> bool:
    """Hosts of equal preference are tried in a random order, made afresh per callout."""
    return len({record.preference for record in records}) == len(records)


def _pick_addresses(answer: AddressAnswer) -> list[str]:
    picked: list[str] = []
    for family in (4, 6):
        for ip in answer.addresses:
            if (6 if ":" in ip else 4) == family:  # resolver answers are canonical text
                picked.append(ip)
                break
    return picked[:ADDRESSES_PER_HOST]


class Planner:
    def __init__(self, config: CalloutConfig, resolver: Resolver, policy: TargetPolicy) -> None:
        self._config = config
        self._resolver = resolver
        self._policy = policy
        self._plans: dict[str, _Planned] = {}

    def known(self, domain: str) -> Plan | None:
        """The plan `plan(domain)` made last, while every DNS answer it was made from is
        still the one the resolver's cache holds: most callouts go to domains called out
        to before, and their plan is the same until a TTL runs out. None otherwise."""
        planned = self._plans.get(domain)
        if planned is None:
            return None
        resolver = self._resolver
        if resolver.cached_mx(domain) is not planned.mx:
            return None
        for host, answer in planned.hosts:
            if resolver.cached_addresses(host) is not answer:
                return None
        return planned.plan

    async def plan(self, domain: str, literal_ip: str | None = None) -> Plan:
        """`domain` is the one whose mail exchangers are asked (after `map`)."""
        if literal_ip is not None:
            return self._allowed([Target(literal_ip, literal_ip, self._config.port)])
        routes = self._config.route_targets(domain)
        if routes is not None:
            return await self._plan_hosts([(host, port) for host, port in routes])
        answer = await self._resolver.mx(domain)
        if answer.status is DnsStatus.NXDOMAIN:
            return _dns_failure(Reason.NO_MAIL_DOMAIN, answer.detail or f"{domain}: NXDOMAIN")
        if answer.status is DnsStatus.TEMPFAIL:
            return _dns_failure(Reason.DNS_TEMPFAIL, answer.detail)
        if answer.status is DnsStatus.NODATA:
            return await self._plan_hosts([(domain, self._config.port)], implicit=True)
        if answer.is_null_mx:
            return _dns_failure(Reason.NO_MAIL_DOMAIN, f"{domain} publishes a null MX (RFC 7505)")
        records = sorted(
            (r for r in answer.records if r.exchange),
            key=lambda r: (r.preference, random.random()),
        )
        port = self._config.port
        hosts = []
        for record in records[: self._config.max_mx_hosts]:  # no cell per callout for `port`
            hosts.append((record.exchange, port))
        plan = await self._plan_hosts(hosts)
        if plan.failure is None and _distinct_preferences(records):
            self._remember(domain, answer, [host for host, _ in hosts], plan)
        return plan

    def _remember(self, domain: str, answer: MxAnswer, hosts: list[str], plan: Plan) -> None:
        """Only what the cache holds now: a plan remembered with an answer the cache no
        longer has would never be used."""
        resolver = self._resolver
        if resolver.cached_mx(domain) is not answer:
            return
        held = []
        for host in hosts:
            cached = resolver.cached_addresses(host)
            if cached is None:  # an IP literal, or an answer not kept
                return
            held.append((host, cached))
        if domain not in self._plans and len(self._plans) >= PLANS_REMEMBERED:
            del self._plans[next(iter(self._plans))]  # the oldest
        self._plans[domain] = _Planned(answer, tuple(held), plan)

    async def _plan_hosts(self, hosts: list[tuple[str, int]], implicit: bool = False) -> Plan:
        answers = await self._host_addresses([host for host, _ in hosts])
        targets = [
            Target(host, ip, port)
            for (host, port), answer in zip(hosts, answers, strict=True)
            for ip in _pick_addresses(answer)
        ]
        if targets:
            return self._allowed(targets)
        statuses = {answer.status for answer in answers}
        details = "; ".join(a.detail for a in answers if a.detail)
        if DnsStatus.TEMPFAIL in statuses:
            return _dns_failure(Reason.DNS_TEMPFAIL, details)
        if implicit:
            details = f"{hosts[0][0]}: no MX and no address records"
        return _dns_failure(Reason.NO_MAIL_DOMAIN, details or "no mail exchanger has an address")

    async def _host_addresses(self, hosts: list[str]) -> list[AddressAnswer]:
        """IP literals answer themselves; the names go to the resolver in one call."""
        names = [host for host in hosts if not _is_ip_literal(host)]
        resolved = dict(zip(names, await self._resolver.addresses_of(names), strict=True))
        answers = []
        for host in hosts:  # a comprehension over `resolved` made it a cell per callout
            answers.append(resolved.get(host) or AddressAnswer(DnsStatus.OK, (host,), 0))
        return answers

    def _allowed(self, targets: list[Target]) -> Plan:
        is_forbidden = self._policy.is_forbidden
        allowed = []
        for target in targets:  # no comprehension: it made `self` a cell per callout
            if not is_forbidden(target.ip):
                allowed.append(target)
        if allowed:
            return Plan(tuple(allowed))
        return self._forbidden(targets)

    def _forbidden(self, targets: list[Target]) -> Plan:
        forbidden = "; ".join(sorted({
            f"{t.host}[{t.ip}]: {self._policy.why_forbidden(t.ip)}" for t in targets
        }))
        return Plan(
            failure=Outcome(
                Reason.TARGET_FORBIDDEN, Stage.DNS, detail=f"forbidden network: {forbidden}"
            )
        )
