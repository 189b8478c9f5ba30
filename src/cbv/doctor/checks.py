"""Each check of `cbv doctor`: what it found, and when something is wrong, how to fix it."""

from __future__ import annotations

import asyncio
import ipaddress
from dataclasses import dataclass

from cbv.address import parse_address
from cbv.cache.backend import CacheError
from cbv.cache.memory import MemoryBackend
from cbv.cache.opening import open_cache
from cbv.cache_location import CacheKind
from cbv.callout.client_protocol import SmtpClientProtocol
from cbv.callout.connector import EgressFailed
from cbv.callout.plan import Target
from cbv.callout.runner import sender_sequence
from cbv.callout.socks_connector import EgressConnector
from cbv.config import Config, DoctorConfig
from cbv.dns.resolver import DnsStatus, Resolver
from cbv.doctor.lookups import DoctorDns
from cbv.egress.table import Egress
from cbv.engine.verifier import Verifier
from cbv.model import Result, SmtpReply
from cbv.protocol.smtp import ReplyError

GREETING_BYTES = 4096
REFUSED_QUERY = ipaddress.ip_network("127.255.255.0/24")  # Spamhaus: "your resolver is refused"
PROBE_ADDRESS = "doctor@cbv.invalid"


@dataclass(frozen=True, slots=True)
class Finding:
    subject: str  # an egress's name, "sender", "cache" or "redis"
    check: str
    ok: bool
    detail: str  # what was found
    fix: str = ""  # one line, when not ok

    def as_dict(self) -> dict[str, object]:
        return {"subject": self.subject, "check": self.check, "ok": self.ok,
                "detail": self.detail, "fix": self.fix}


def _passed(egress: Egress, check: str, detail: str) -> Finding:
    return Finding(egress.name, check, True, detail)


def _failed(egress: Egress, check: str, detail: str, fix: str) -> Finding:
    return Finding(egress.name, check, False, detail, fix)


async def helo_resolves(egress: Egress, dns: DoctorDns) -> Finding:
    helo = egress.helo_name
    found = await dns.addresses(helo)
    if found.status is not DnsStatus.OK:
        target = egress.seen_as or "the egress's public address"
        return _failed(egress, "HELO name resolves", f"{helo} has no A/AAAA record "
                       f"({found.detail})", f"publish an A/AAAA record for {helo} -> {target}")
    return _passed(egress, "HELO name resolves", f"{helo} -> {', '.join(found.values)}")


async def reverse_matches(egress: Egress, dns: DoctorDns) -> Finding:
    """PTR of the public address = HELO name, and that name resolves back to the address."""
    check, helo, public = "PTR = HELO name", egress.helo_name, egress.seen_as
    if not public:
        return _failed(egress, check, "its public address is unknown (it leaves through a proxy)",
                       f"set public_address in the [[callout.egress]] table of {egress.name}")
    names = await dns.names(public)
    if names.status is not DnsStatus.OK:
        return _failed(egress, check, f"{public} has no PTR record ({names.detail})",
                       f"ask whoever runs {public} to set its PTR to {helo}")
    if helo.lower().rstrip(".") not in names.values:
        return _failed(egress, check, f"the PTR of {public} is {', '.join(names.values)}, "
                       f"not {helo}", f"set helo_name = \"{names.values[0]}\" for "
                       f"{egress.name}, or have the PTR of {public} changed to {helo}")
    forward = await dns.addresses(helo)
    if _canonical(public) not in {_canonical(ip) for ip in forward.values}:
        return _failed(egress, check, f"{helo} does not resolve back to {public} (PTR not "
                       "forward-confirmed)", f"add {public} to the A/AAAA records of {helo}")
    return _passed(egress, check, f"{public} -> {helo} -> {public}")


def _canonical(ip: str) -> str:
    return str(ipaddress.ip_address(ip))


async def not_listed(egress: Egress, dns: DoctorDns, zones: list[str]) -> list[Finding]:
    public = egress.seen_as
    if not public:
        return [_failed(egress, "not on blocklists", "cannot look it up: its public address is "
                        "unknown", f"set public_address in the [[callout.egress]] table of "
                        f"{egress.name}")]
    return list(await asyncio.gather(*(_listing(egress, dns, public, zone) for zone in zones)))


async def _listing(egress: Egress, dns: DoctorDns, public: str, zone: str) -> Finding:
    check = f"not on {zone}"
    found = await dns.listing(public, zone)
    if found.status in (DnsStatus.NXDOMAIN, DnsStatus.NODATA):
        return _passed(egress, check, f"{public} is not listed")
    if found.status is DnsStatus.TEMPFAIL:
        return _failed(egress, check, f"cannot ask {zone}: {found.detail}",
                       "check [dns] nameservers; blocklists must be reachable from them")
    answers = ", ".join(found.values)
    if all(ipaddress.ip_address(ip) in REFUSED_QUERY for ip in found.values):
        return _failed(egress, check, f"{zone} refused the query ({answers})",
                       f"use a resolver of your own in [dns] nameservers; {zone} refuses "
                       "public ones")
    return _failed(egress, check, f"{public} is listed ({answers})",
                   f"ask {zone} to delist {public}, or move callouts to another egress")


async def greets_through(egress: Egress, dns: DoctorDns, doctor: DoctorConfig) -> Finding:
    """The test host answers a greeting on its port through this egress, in time."""
    host, port = doctor.test_target()
    check = f"greeting from {host}:{port}"
    ip = await _test_host_address(host, dns, egress)
    if ip is None:
        return _failed(egress, check, f"{host} has no address this egress can dial",
                       "set [doctor] test_host to a mail server that resolves")
    connector = EgressConnector(handshake_timeout=doctor.timeout / 2)
    try:
        async with asyncio.timeout(doctor.timeout):
            connection = SmtpClientProtocol(max_reply_bytes=GREETING_BYTES)
            try:
                await connector.connect(Target(host, ip, port), egress, connection)
                await connection.arrival()
                greeting = connection.take()
            finally:
                connection.abort()
    except EgressFailed as exc:
        return _failed(egress, check, str(exc),
                       "check the proxy's address and credentials, and that it runs")
    except (TimeoutError, OSError, ReplyError) as exc:
        reason = "timed out" if isinstance(exc, TimeoutError) else str(exc) or type(exc).__name__
        return _failed(egress, check, f"no greeting within {doctor.timeout:g} s ({reason})",
                       f"outbound port {port} seems blocked here: ask the provider to open it, "
                       "or send callouts through a SOCKS5 proxy egress")
    first_line = f"{greeting.code} {greeting.lines[0]}"[:120]
    if greeting.code != 220:
        return _failed(egress, check, f"greeted with {first_line}",
                       "the test host refuses this egress: see its blocklist checks")
    return _passed(egress, check, first_line)


async def _test_host_address(host: str, dns: DoctorDns, egress: Egress) -> str | None:
    try:
        candidates: tuple[str, ...] = (_canonical(host),)
    except ValueError:
        candidates = (await dns.addresses(host)).values
    for ip in candidates:
        try:
            egress.source_for(ip)
        except OSError:
            continue
        return ip
    return None


async def sender_accepted(config: Config, resolver: Resolver) -> Finding:
    """Servers that verify the verifier's own sender must find it: an MX, and a yes to it."""
    senders = [sender for sender in sender_sequence(config.callout) if sender]
    if not senders:
        return Finding("sender", "fallback sender accepted", True,
                       "only the null sender is used; nothing to verify")
    sender = senders[-1]
    domain = parse_address(sender).domain
    check = f"{sender} accepted"
    mx = await resolver.mx(domain)
    if mx.status is not DnsStatus.OK or mx.is_null_mx:
        return Finding("sender", check, False,
                       f"{domain} has no usable MX ({mx.detail or mx.status})",
                       f"publish an MX for {domain}, or set fallback_mail_from to an address "
                       "whose domain receives mail")
    async with Verifier(config, resolver=resolver, cache=MemoryBackend(16)) as verifier:
        verdict = await verifier.verify(sender, use_cache=False)
    if verdict.result is Result.PASS:
        return Finding("sender", check, True, f"{verdict.mx} said {_said(verdict.reply)}")
    found = verdict.detail or _said(verdict.reply)
    return Finding("sender", check, False, f"{verdict.result}/{verdict.reason}: {found}",
                   f"make {domain}'s mail server accept {sender}, or set fallback_mail_from "
                   "to an address that exists")


def _said(reply: SmtpReply | None) -> str:
    return f"{reply.code} {reply.text}"[:120] if reply is not None else "nothing"


async def cache_usable(config: Config) -> Finding:
    location = config.cache.location()
    subject = "redis" if location.kind in (CacheKind.REDIS, CacheKind.REDIS_CLUSTER) else "cache"
    check = "reachable" if subject == "redis" else "usable"
    try:
        opened = open_cache(config.cache, fall_back=False)
    except CacheError as exc:
        return Finding(subject, check, False, str(exc), "fix cache.url or cache.path")
    try:
        await opened.backend.get(parse_address(PROBE_ADDRESS))
    except CacheError as exc:
        return Finding(subject, check, False, str(exc),
                       "start Redis, or point cache.url at one that runs")
    finally:
        await opened.backend.aclose()
    return Finding(subject, check, True, str(location.kind.value))
