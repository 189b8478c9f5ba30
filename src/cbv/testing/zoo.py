"""A zoo of mail-exchanger behaviours on loopback, one domain each: what `cbv demo` shows,
what the comparison with other verifiers runs, and a ready-made world for users' tests."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Self

from cbv.model import Reason
from cbv.testing.fake_dns import FakeDNS
from cbv.testing.mx_farm import MXFarm, start_farm
from cbv.testing.mx_script import MXScript
from cbv.testing.replies import Reply

# Every zoo host sits in one loopback /24 under one provider name (zoo.test), and tests
# ask the same hosts again and again, which no set of real, unrelated mail exchangers
# would see: a config that dials the zoo lifts the destination budgets with these.
ZOO_LIMITS = {"ip_burst": 1000, "network_burst": 1000, "provider_burst": 1000}
OK = Reply(250, "2.1.5 Ok")
DnsSetup = Callable[[FakeDNS, str], None]


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    expected: Reason
    hosts: tuple[MXScript | None, ...] = ()  # in preference order; None is a dead host
    dns: DnsSetup | None = None  # replaces the MX records the hosts would get
    local_part: str = "alice"

    def domain(self) -> str:
        return f"{self.name}.zoo.test"

    def address(self) -> str:
        return f"{self.local_part}@{self.domain()}"


def _accepting(**overrides: object) -> MXScript:
    return MXScript(rcpt=[("alice@*", OK)], **overrides)  # type: ignore[arg-type]


def _null_mx(dns: FakeDNS, domain: str) -> None:
    dns.add_null_mx(domain)


def _nxdomain(dns: FakeDNS, domain: str) -> None:
    dns.set_nxdomain(domain)


def _servfail(dns: FakeDNS, domain: str) -> None:
    dns.set_servfail(domain)


def _forbidden(dns: FakeDNS, domain: str) -> None:
    dns.add_mx(domain, [(10, f"mx.{domain}")])
    dns.add_aaaa(f"mx.{domain}", "::1")


SCENARIOS: tuple[Scenario, ...] = (
    Scenario("accepted", "the mailbox exists", Reason.ACCEPTED, (_accepting(),)),
    Scenario("unknown", "550 5.1.1 user unknown", Reason.MAILBOX_UNKNOWN, (MXScript(),)),
    Scenario("unknown-plain", "550 without an enhanced code", Reason.MAILBOX_UNKNOWN,
             (MXScript(rcpt_reply_default=Reply(550, "No such user here")),)),
    Scenario("policy-block", "550 5.7.1 the verifier's IP is blocklisted at RCPT",
             Reason.CLIENT_BLOCKED,
             (MXScript(rcpt_reply_default=Reply(
                 550, "5.7.1 Service unavailable; client host blocked using zen.spamhaus.org")),)),
    Scenario("greeting-5xx", "554 at the greeting", Reason.VERIFIER_REJECTED,
             (MXScript(banner=Reply(554, "5.7.1 No SMTP service here")),)),
    Scenario("null-sender-refused", "MAIL FROM:<> refused, the fallback sender accepted",
             Reason.ACCEPTED,
             (_accepting(mail=[("", Reply(550, "5.7.1 null sender not accepted"))]),)),
    Scenario("all-senders-refused", "every MAIL FROM refused", Reason.SENDER_REJECTED,
             (MXScript(mail_reply_default=Reply(550, "5.7.1 sender rejected")),)),
    Scenario("catch-all", "accepts any local part", Reason.ACCEPTED,
             (MXScript(catch_all=True),)),
    Scenario("greylisting", "450 4.2.0 greylisted", Reason.GREYLISTED,
             (_accepting(greylist_seconds=3600.0),)),
    Scenario("first-mx-dead", "the preferred MX refuses connections", Reason.ACCEPTED,
             (None, _accepting())),
    Scenario("busy-421", "421 at the greeting on every MX", Reason.CLIENT_THROTTLED,
             (MXScript(banner=Reply(421, "4.3.2 Too many connections, try later")),)),
    Scenario("mailbox-full", "552 5.2.2 over quota", Reason.MAILBOX_FULL,
             (MXScript(rcpt_reply_default=Reply(552, "5.2.2 <{addr}>: mailbox full")),)),
    Scenario("starttls", "STARTTLS offered and used", Reason.ACCEPTED,
             (_accepting(starttls=True),)),
    Scenario("tarpit", "the greeting never comes", Reason.TIMEOUT, (MXScript(banner=None),)),
    Scenario("dropped", "the connection drops at MAIL", Reason.CONNECTION_FAILED,
             (MXScript(drop_at="mail"),)),
    Scenario("null-mx", "RFC 7505 null MX: no mail accepted", Reason.NO_MAIL_DOMAIN,
             dns=_null_mx),
    Scenario("nxdomain", "the domain does not exist", Reason.NO_MAIL_DOMAIN, dns=_nxdomain),
    Scenario("servfail", "the domain's DNS is broken", Reason.DNS_TEMPFAIL, dns=_servfail),
    Scenario("forbidden", "the MX points at a network cbv may not dial", Reason.TARGET_FORBIDDEN,
             dns=_forbidden),
    Scenario("bad-syntax", "an address that could inject SMTP", Reason.BAD_SYNTAX,
             local_part="alice>\r\nDATA"),
)


@dataclass
class Zoo:
    """Every scenario's domain published in `dns`, its hosts on 127.0.0.x sharing `port`."""

    dns: FakeDNS
    farm: MXFarm | None
    scenarios: tuple[Scenario, ...]
    hosts: dict[str, list[str]] = field(default_factory=dict)  # domain -> host IPs

    @property
    def port(self) -> int:
        return self.farm.port if self.farm else 25

    async def stop(self) -> None:
        if self.farm is not None:
            await self.farm.stop()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()


def _host_ip(index: int, first_octet: int) -> str:
    return f"127.0.{first_octet}.{index + 1}"


async def start_zoo(
    dns: FakeDNS, scenarios: tuple[Scenario, ...] = SCENARIOS, subnet: int = 77
) -> Zoo:
    """Start the MX hosts on 127.0.<subnet>.N and publish the zone in `dns`."""
    scripts: dict[str, MXScript] = {}
    dead: list[str] = []
    hosts: dict[str, list[str]] = {}
    for scenario in scenarios:
        domain = scenario.domain()
        if scenario.dns is not None:
            scenario.dns(dns, domain)
            continue
        ips = []
        for script in scenario.hosts:
            ip = _host_ip(len(scripts) + len(dead), subnet)
            ips.append(ip)
            if script is None:
                dead.append(ip)
            else:
                scripts[ip] = script
        hosts[domain] = ips
        records = []
        for preference, ip in enumerate(ips, start=1):
            name = f"mx{preference}.{domain}"
            dns.add_a(name, ip)
            records.append((preference * 10, name))
        if records:
            dns.add_mx(domain, records)
    farm = await start_farm(scripts) if scripts else None
    return Zoo(dns, farm, scenarios, hosts)
