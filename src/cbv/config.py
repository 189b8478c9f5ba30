"""Configuration: TOML validated by pydantic; unknown keys are errors that name the key."""

from __future__ import annotations

import ipaddress
import re
import socket
import urllib.parse
from pathlib import Path
from string import Formatter
from typing import Annotated, Any, Literal, TypeVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from cbv.address import AddressError, parse_domain
from cbv.cache_location import CacheKind, CacheLocation, parse_cache_location
from cbv.config_file import DEFAULT_CONFIG_PATH as DEFAULT_CONFIG_PATH  # re-exported
from cbv.config_file import ConfigError as ConfigError
from cbv.config_file import config_source as config_source
from cbv.config_file import read_config_file
from cbv.egress.settings import (
    EgressConfig,
    check_egresses,
    normalise_routes,
    parse_proxy_url,
)
from cbv.endpoint import Endpoint, parse_endpoint, split_host_port

QUEUE_KINDS = (CacheKind.REDIS, CacheKind.REDIS_CLUSTER, CacheKind.SQLITE)


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


PositiveSeconds = Annotated[float, Field(gt=0, le=3600)]
V = TypeVar("V")


def domain_key(entry: str, *, wildcard: bool = False) -> str:
    """A domain as the config names it, in the form addresses take once parsed (A-labels,
    lower case, no final dot), so every lookup by an address's domain finds it; with
    `wildcard`, "*.domain" too. Raises ValueError in one line."""
    text = entry.strip()
    try:
        if wildcard and text.startswith("*."):
            return "*." + parse_domain(text[2:])
        return parse_domain(text)
    except AddressError as exc:
        raise ValueError(str(exc)) from None


def _domain_keys(table: dict[str, V], wildcard: bool = False) -> dict[str, V]:
    keys: dict[str, str] = {}
    for entry in table:
        key = domain_key(entry, wildcard=wildcard)
        if key in keys:
            raise ValueError(f"{keys[key]!r} and {entry!r} are the same domain")
        keys[key] = entry
    return {key: table[entry] for key, entry in keys.items()}


class DnsConfig(_Section):
    nameservers: list[str] = Field(
        default_factory=list,
        description="'ip' or 'ip:port'; empty means the system resolver",
    )
    timeout: PositiveSeconds = Field(
        default=5.0,
        description="seconds for a whole DNS lookup, retries included",
    )
    cache_size: int = Field(
        default=10_000, ge=0,
        description=(
            "answers kept in the MX/address cache (TTL-honouring, least recently used dropped); 0"
            " disables it"
        ),
    )
    negative_ttl: int = Field(default=300, ge=0, description="cap for NXDOMAIN/NODATA caching")

    @field_validator("nameservers")
    @classmethod
    def _check_nameservers(cls, value: list[str]) -> list[str]:
        for entry in value:
            host, _ = split_host_port(entry, 53)
            ipaddress.ip_address(host)
        return value

    def nameserver_addresses(self) -> list[tuple[str, int]]:
        return [split_host_port(entry, 53) for entry in self.nameservers]


class CalloutConfig(_Section):
    port: int = Field(
        default=25, gt=0, lt=65536,
        description="TCP port dialled on every mail exchanger (routes may name their own)",
    )
    helo_name: str = Field(
        default_factory=socket.getfqdn,
        description="name sent in EHLO/HELO, and the domain of a bare `fallback_mail_from`",
    )
    mail_from: str = Field(
        default="",
        description="MAIL FROM for callouts (Momentum `mailfrom`); \"\" is the null sender",
    )
    fallback_mail_from: str = Field(
        default="postmaster",
        description=(
            "sender tried when the first is refused (at MAIL, or at RCPT): a local part "
            "(@ `helo_name` is added), a full address, or a template such as "
            "\"postmaster@{recipient_domain}\" (the domain of the message's recipient when the "
            "front end knows it, else `helo_name`); \"\" for none"
        ),
    )
    try_null_sender_first: bool = Field(
        default=True,
        description=(
            "with `mail_from = \"\"`, try `MAIL FROM:<>` first; false starts with the fallback "
            "sender"
        ),
    )
    try_vrfy_first: bool | Literal["always"] = Field(
        default=False,
        description=(
            "ask VRFY before MAIL/RCPT when the EHLO reply advertises VRFY (\"always\": even when"
            " not advertised); 250/251 pass, 5.1.x fails, anything else falls through to RCPT"
        ),
    )
    detect_catch_all: bool = Field(
        default=True,
        description=(
            "probe a random local part once per session to tell catch-all domains (`catch_all` in"
            " the verdict)"
        ),
    )
    recheck_catch_all: bool = Field(
        default=False,
        description=(
            "call out to a domain known to be catch-all (`cache.catch_all_ttl`); false answers "
            "pass, catch_all, from the fact without a connection"
        ),
    )
    starttls: Literal["opportunistic", "never"] = Field(
        default="opportunistic",
        description=(
            "\"opportunistic\": use STARTTLS when offered (no certificate check, plain text again"
            " if the handshake fails); \"never\""
        ),
    )
    connect_timeout: PositiveSeconds = Field(
        default=10.0,
        description="seconds to establish a TCP connection to one host",
    )
    command_timeout: PositiveSeconds = Field(
        default=10.0,
        description="seconds to wait for each reply, the greeting included",
    )
    total_timeout: PositiveSeconds = Field(
        default=30.0,
        description="budget in seconds for the whole callout, all hosts together",
    )
    max_mx_hosts: int = Field(
        default=3, ge=1, le=20,
        description=(
            "mail exchangers tried, in preference order (each at its first IPv4 and first IPv6 "
            "address)"
        ),
    )
    max_rcpts_per_session: int = Field(
        default=10, ge=1, le=100,
        description="RCPT commands per SMTP session, catch-all probe included; never exceeded",
    )
    max_reply_bytes: int = Field(
        default=65_536, ge=1024,
        description="largest multi-line reply accepted before the host is treated as broken",
    )
    source_address: str | None = Field(
        default=None,
        description=(
            "local IP address to dial from; default: the system's choice (also for egress tables"
            " that name neither address nor proxy)"
        ),
    )
    proxy: str = Field(
        default="",
        description=(
            "\"socks5://[user:pass@]host:port\": every callout leaves through this proxy (short"
            " for one [[callout.egress]])"
        ),
    )
    egress: list[EgressConfig] = Field(
        default_factory=list,
        description=(
            "[[callout.egress]] tables, the ways out (docs/egress.md); none: one direct egress"
        ),
    )
    egress_routes: dict[str, list[str]] = Field(
        default_factory=dict,
        description=(
            "provider or domain -> egress name(s), \"*\" for the rest; several names form a pool"
            " used in turn"
        ),
    )
    egress_rest_after: int = Field(
        default=3, ge=1, le=1000,
        description=(
            "an egress refused as blocked/listed by this many different hosts within "
            "`egress_refusal_window` rests"
        ),
    )
    egress_refusal_window: PositiveSeconds = Field(
        default=600.0,
        description="seconds over which refusals of an egress are counted",
    )
    egress_rest: PositiveSeconds = Field(
        default=1800.0,
        description="seconds a refused egress carries no callouts (the next eligible one does)",
    )
    map: dict[str, str] = Field(
        default_factory=dict,
        description=(
            "sender domain -> domain whose MX is asked (Momentum `map`); the RCPT still names the"
            " original address"
        ),
    )
    routes: dict[str, list[str]] = Field(
        default_factory=dict,
        description=(
            "domain (after `map`) -> explicit \"host[:port]\" list, dialled instead of its MX "
            "(call forward); still subject to `security.allowed_target_networks`"
        ),
    )

    @field_validator("helo_name")
    @classmethod
    def _check_helo(cls, value: str) -> str:
        if not value or any(c.isspace() or c in "<>" for c in value):
            raise ValueError(f"helo_name {value!r} is not a host name")
        return value

    @field_validator("egress_routes", mode="before")
    @classmethod
    def _check_egress_routes(cls, value: object) -> object:
        return normalise_routes(value) if isinstance(value, dict) else value

    @field_validator("proxy")
    @classmethod
    def _check_proxy(cls, value: str) -> str:
        if value:
            parse_proxy_url(value)
        return value.strip()

    @model_validator(mode="after")
    def _check_egresses(self) -> CalloutConfig:
        check_egresses(self.egress, self.egress_routes, self.proxy, self.source_address)
        return self

    @field_validator("map")
    @classmethod
    def _check_map(cls, value: dict[str, str]) -> dict[str, str]:
        return {key: domain_key(target) for key, target in _domain_keys(value).items()}

    @field_validator("routes")
    @classmethod
    def _check_routes(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        for hosts in value.values():
            if not hosts:
                raise ValueError("a route needs at least one host")
            for host in hosts:
                split_host_port(host, 25)
        return _domain_keys(value)

    def route_targets(self, domain: str) -> list[tuple[str, int]] | None:
        hosts = self.routes.get(domain)
        if hosts is None:
            return None
        return [split_host_port(host, self.port) for host in hosts]


class SecurityConfig(_Section):
    allowed_target_networks: list[str] = Field(
        default_factory=list,
        description=(
            "networks callouts may dial although not global (loopback, RFC 1918, link-local, "
            "CGNAT, reserved... are forbidden otherwise)"
        ),
    )

    @field_validator("allowed_target_networks")
    @classmethod
    def _check_networks(cls, value: list[str]) -> list[str]:
        for net in value:
            ipaddress.ip_network(net, strict=False)
        return value


class CacheConfig(_Section):
    """Lifetimes in seconds; 0 means "do not cache this class"."""

    url: str = Field(
        default="",
        description=(
            "cache backend: \"sqlite:///path\", \"memory://\", \"redis://host:port/db\", "
            "\"redis+cluster://host:port\"; \"\" is SQLite at `path`"
        ),
    )
    path: str = Field(
        default="",
        description=(
            "SQLite file when `url` is empty; \"\" is cache.sqlite3 in the user's state directory"
        ),
    )
    pass_ttl: int = Field(default=7 * 86_400, ge=0, description="seconds a pass verdict is kept")
    pass_refresh: int = Field(
        default=86_400, ge=0,
        description=(
            "seconds after which a cached pass is answered and renewed by a background callout"
        ),
    )
    fail_ttl: int = Field(default=3 * 3_600, ge=0, description="seconds a fail verdict is kept")
    transient_ttl: int = Field(
        default=300, ge=0,
        description=(
            "seconds a transient verdict is kept (never replacing a still-valid pass or fail)"
        ),
    )
    unknown_ttl: int = Field(default=3_600, ge=0, description="seconds an unknown verdict is kept")
    catch_all_ttl: int = Field(
        default=86_400, ge=0,
        description=(
            "seconds a domain's catch-all finding is remembered (the probe is skipped meanwhile)"
        ),
    )
    null_sender_ttl: int = Field(
        default=86_400, ge=0,
        description=(
            "seconds a domain's refusal of the null sender is remembered (the fallback sender "
            "goes first)"
        ),
    )
    vrfy_ttl: int = Field(
        default=86_400, ge=0,
        description="seconds a domain's VRFY usefulness is remembered",
    )
    recipient_limit_ttl: int = Field(
        default=7 * 86_400, ge=0,
        description=(
            "seconds a domain's one-recipient-per-transaction limit is remembered (the catch-all"
            " probe gets a transaction of its own)"
        ),
    )
    unreachable_ttl: int = Field(
        default=120, ge=0,
        description="seconds a domain whose every MX failed is not dialled again",
    )
    memory_entries: int = Field(
        default=100_000, ge=0,
        description="verdicts kept in the in-process tier in front of SQLite or Redis",
    )
    memory_ttl: float = Field(
        default=30.0, ge=0, le=86_400,
        description="seconds the in-process tier may answer before asking the shared backend again",
    )
    hmac_key: str = Field(
        default="",
        description=(
            "with Redis: key for HMAC-SHA256 of addresses in keys and values, so a dump does not "
            "reveal them"
        ),
    )
    redis_timeout: PositiveSeconds = Field(
        default=0.5,
        description="seconds for one Redis command before Redis counts as down",
    )
    redis_retry_interval: PositiveSeconds = Field(
        default=2.0,
        description="seconds between attempts to reach Redis again while it is down",
    )

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        parse_cache_location(value)
        return value

    @model_validator(mode="after")
    def _check_combination(self) -> CacheConfig:
        if self.path and self.url:
            raise ValueError("set cache.url or cache.path, not both")
        if self.pass_refresh > self.pass_ttl:
            raise ValueError("pass_refresh must not exceed pass_ttl")
        return self

    def location(self) -> CacheLocation:
        return parse_cache_location(self.url, self.path)


class LimitsConfig(_Section):
    """Good citizenship: how hard cbv may press on one domain, one MX and the Internet."""

    domain_per_minute: float = Field(
        default=30.0, gt=0, le=1_000_000,
        description="callouts per minute to one target domain (token bucket), shared through Redis",
    )
    domain_burst: int = Field(
        default=10, ge=1, le=100_000,
        description="callouts a domain may receive at once before the per-minute rate applies",
    )
    domain_overrides: dict[str, float] = Field(
        default_factory=dict,
        description="domain -> callouts per minute, replacing `domain_per_minute` for that domain",
    )
    mx_concurrency: int = Field(
        default=5, ge=1, le=10_000,
        description="sessions open at once to one MX address",
    )
    max_in_flight: int = Field(
        default=500, ge=1, le=100_000,
        description=(
            "callouts in flight in this process (and fleet-wide with Redis); also the concurrency"
            " of `cbv verify --file`"
        ),
    )
    max_wait: float = Field(
        default=5.0, ge=0, le=600,
        description=(
            "seconds a callout may wait for a budget before answering transient/rate_limited"
        ),
    )
    ip_per_minute: float = Field(
        default=60.0, gt=0, le=1_000_000,
        description="sessions per minute to one MX address, whatever the domains, shared "
                    "through Redis",
    )
    ip_burst: int = Field(
        default=3, ge=1, le=100_000,
        description="sessions one MX address may receive at once before `ip_per_minute` applies",
    )
    network_per_minute: float = Field(
        default=120.0, gt=0, le=1_000_000,
        description="sessions per minute to one network of MX addresses (IPv4 /24, IPv6 /48)",
    )
    network_burst: int = Field(
        default=10, ge=1, le=100_000,
        description="sessions one network may receive at once before `network_per_minute` "
                    "applies",
    )
    provider_per_minute: float = Field(
        default=120.0, gt=0, le=1_000_000,
        description="sessions per minute to the MX hosts of one provider (the registrable "
                    "domain of the MX name: alt1.aspmx.l.google.com -> google.com)",
    )
    provider_burst: int = Field(
        default=10, ge=1, le=100_000,
        description="sessions one provider may receive at once before `provider_per_minute` "
                    "applies",
    )
    provider_overrides: dict[str, float] = Field(
        default_factory=dict,
        description="provider (registrable domain) -> sessions per minute, replacing "
                    "`provider_per_minute` for it",
    )
    refusal_cooldown: float = Field(
        default=3_600.0, gt=0, le=86_400,
        description="seconds no callout goes to an MX address that refused the verifier "
                    "itself; doubles on each repeat up to 24 h, a good session resets it",
    )

    @field_validator("domain_overrides", "provider_overrides")
    @classmethod
    def _check_overrides(cls, value: dict[str, float]) -> dict[str, float]:
        for domain, rate in value.items():
            if not rate > 0:
                raise ValueError(f"rate for {domain!r} must be above 0")
        return _domain_keys(value)

    def domain_rate(self, domain: str) -> float:
        return self.domain_overrides.get(domain, self.domain_per_minute)

    def provider_rate(self, provider: str) -> float:
        return self.provider_overrides.get(provider, self.provider_per_minute)


class ServerConfig(_Section):
    """Listeners: "host:port" or "unix:/path"; "" turns one off."""

    policy: str = Field(default="127.0.0.1:10040", description="Postfix check_policy_service")
    smtpcbd: str = Field(default="127.0.0.1:4571",
                         description="qpsmtpd smtp_callback plugin, Exim ${readsocket}")
    milter: str = Field(default="", description="milter protocol 6: Postfix smtpd_milters, "
                        "Sendmail INPUT_MAIL_FILTER")
    http: str = Field(default="", description="HTTP API, /metrics and the status page; beyond "
                      "loopback only with [http] token")
    answer_within: PositiveSeconds = Field(
        default=8.0, description="slower callouts are answered 'in progress' and finish behind"
    )
    fail_open: bool = Field(default=True, description="internal error: accept (DUNNO), not defer")
    shutdown_timeout: PositiveSeconds = Field(
        default=10.0, description="SIGTERM: how long requests in flight may take to finish"
    )
    idle_timeout: PositiveSeconds = Field(
        default=900.0, description="close client connections silent for this long"
    )
    max_connections: int = Field(
        default=1000, ge=1, le=1_000_000,
        description="per listener; past it a new connection is closed at once (one log line)",
    )
    milter_max_packet: int = Field(
        default=65_535, ge=4096, le=1 << 20,
        description="largest milter packet data in bytes (libmilter's default); a larger "
        "packet closes the connection",
    )
    event_loop: Literal["auto", "asyncio", "uvloop"] = Field(
        default="auto", description="'auto': uvloop when installed (cbv[speed]); read at start "
        "only",
    )

    @field_validator("policy", "smtpcbd", "milter", "http")
    @classmethod
    def _check_endpoint(cls, value: str) -> str:
        if value.strip():
            parse_endpoint(value)
        return value.strip()

    def endpoints(self) -> dict[str, Endpoint]:
        """The listeners turned on, by name."""
        named = {"policy": self.policy, "smtpcbd": self.smtpcbd, "milter": self.milter,
                 "http": self.http}
        return {name: parse_endpoint(value) for name, value in named.items() if value}


_REPLY = re.compile(
    r"(?P<code>[245]\d\d)(?: (?P<enhanced>[245]\.\d{1,3}\.\d{1,3}))? (?P<text>\S.*)"
)
REPLY_FIELDS = frozenset({"address", "reason", "why"})


def parse_reply_template(template: str) -> tuple[int, str | None, str]:
    """ "550 5.1.7 text" -> (550, "5.1.7", "text"); the enhanced code is optional."""
    match = _REPLY.fullmatch(template)
    if match is None:
        raise ValueError(f"{template!r} is not 'CODE [X.Y.Z] text'")
    enhanced = match["enhanced"]
    if enhanced and enhanced[0] != match["code"][0]:
        raise ValueError(f"{template!r}: the enhanced code's class differs from the reply code's")
    return int(match["code"]), enhanced, match["text"]


def _check_placeholders(template: str) -> None:
    try:
        fields = [(name, spec, conv) for _, name, spec, conv in Formatter().parse(template)
                  if name is not None]
    except ValueError as exc:
        raise ValueError(f"{template!r}: {exc}") from None
    for name, spec, conv in fields:
        if name not in REPLY_FIELDS or spec or conv:
            known = ", ".join(f"{{{field}}}" for field in sorted(REPLY_FIELDS))
            raise ValueError(f"{template!r}: unknown placeholder {{{name}}} (known: {known})")


def _check_reply(template: str | None, codes: str) -> str | None:
    if template is None:
        return None
    if any(c in template for c in "\r\n\0"):
        raise ValueError("a reply text must be one line")
    _check_placeholders(template)
    code, _, _ = parse_reply_template(template)
    if str(code)[0] not in codes:
        raise ValueError(f"{template!r}: the code must be {codes[0]}xx")
    return template


class ReplyTexts(_Section):
    """SMTP replies; None means the Postfix-style default for what is verified.

    Placeholders: {address}, {reason} (the verdict's reason) and {why} (reason, the MX
    and its reply). Postfix puts "<address>: Sender address rejected: " before the text.
    """

    reject: str | None = Field(default=None, description=(
        "on_fail = reject; default 550 5.1.7 undeliverable address ({why}), 5.1.1 for recipients"))
    defer: str | None = Field(default=None, description=(
        "on_transient = defer; default 450 4.1.7 unverified address ({why}), 4.1.1 for recipients"))
    in_progress: str | None = Field(default=None, description=(
        "past answer_within; default 450 4.1.7 unverified address: address verification in "
        "progress"))
    quarantine: str | None = Field(default=None, description=(
        "on_fail = quarantine, the HOLD reason; default cbv: undeliverable address ({why})"))
    error: str | None = Field(default=None, description=(
        "cbv failed and fail_open = false; default 451 4.3.0 address verification failed: "
        "internal error"))

    @field_validator("reject")
    @classmethod
    def _check_reject(cls, value: str | None) -> str | None:
        return _check_reply(value, "5")

    @field_validator("defer", "in_progress", "error")
    @classmethod
    def _check_defer(cls, value: str | None) -> str | None:
        return _check_reply(value, "4")

    @field_validator("quarantine")
    @classmethod
    def _check_quarantine(cls, value: str | None) -> str | None:
        if value is not None:
            if not value.strip() or any(c in value for c in "\r\n\0"):
                raise ValueError("the quarantine reason must be one non-empty line")
            _check_placeholders(value)
        return value


def _normalise_pattern(entry: str) -> str:
    """An address or domain, maybe with * and ? wildcards; plain domains in A-label form."""
    text = entry.strip().lower()
    if not text or any(c.isspace() for c in text):
        raise ValueError(f"{entry!r} is not an address, domain or pattern")
    local, sep, domain = text.rpartition("@")
    if not any(c in domain for c in "*?["):
        domain = parse_domain(domain)
    return f"{local}{sep}{domain}"




Action = Literal["reject", "quarantine", "accept"]
TransientAction = Literal["defer", "accept"]
VerifyWhat = Literal["sender", "recipient"]
Score = Annotated[float, Field(ge=0, le=1000)]


class _PolicyRules(_Section):
    """Validation shared by [policy] and its per-domain tables."""

    @field_validator("subject_tag", check_fields=False)
    @classmethod
    def _check_tag(cls, value: str | None) -> str | None:
        if value is not None and (not value.strip() or any(c in value for c in "\r\n\0")):
            raise ValueError("the subject tag must be one non-empty line")
        return value

    @field_validator("allowlist", check_fields=False)
    @classmethod
    def _check_allowlist(cls, value: list[str] | None) -> list[str] | None:
        try:
            return None if value is None else [_normalise_pattern(entry) for entry in value]
        except AddressError as exc:
            raise ValueError(str(exc)) from None


class DomainPolicy(_PolicyRules):
    """[policy.domains."example.com"]: what is set here replaces the [policy] value."""

    enabled: bool | None = None
    verify: VerifyWhat | None = None
    on_fail: Action | None = None
    on_transient: TransientAction | None = None
    on_unknown: Literal["accept"] | None = None
    dry_run: bool | None = None
    tag_subject: bool | None = None
    subject_tag: str | None = None
    score: Score | None = None
    add_header: bool | None = None
    exclude_authenticated: bool | None = None
    exclude_local: bool | None = None
    allowlist: list[str] | None = None
    replies: ReplyTexts | None = None


class PolicyConfig(_PolicyRules):
    """What to do with a verdict (docs/policy.md); per recipient domain tables may change
    every key but phase, local_domains and local_networks."""

    enabled: bool = Field(default=True, description="false: only domains that enable it")
    phase: Literal["mailfrom", "rcptto"] = Field(
        default="mailfrom", description="verify once the sender is given, or at RCPT only")
    verify: VerifyWhat = Field(
        default="sender", description="recipient: call forward, each recipient is checked")
    on_fail: Action = Field(default="reject", description="the address does not exist")
    on_transient: TransientAction = Field(
        default="defer", description="no answer yet (greylisting, timeouts, in progress)")
    on_unknown: Literal["accept"] = Field(
        default="accept", description="the callout said nothing about the address")
    dry_run: bool = Field(default=False, description="decide and log only (Postfix WARN)")
    tag_subject: bool = Field(default=False, description="tag failed senders accepted")
    subject_tag: str = Field(default="*** CBV ***", description="the tag (milter only)")
    score: Score = Field(default=1.0, description="points for a failed sender accepted")
    add_header: bool = Field(default=False, description="X-CBV-Result on accepted mail")
    exclude_authenticated: bool = Field(default=True, description="skip SASL sessions")
    exclude_local: bool = Field(
        default=True, description="skip local_domains senders and local_networks clients")
    allowlist: list[str] = Field(
        default_factory=list, description="senders never verified: a@b, b, *.b, news-*@b")
    local_domains: list[str] = Field(default_factory=list, description="your own domains")
    local_networks: list[str] = Field(
        default_factory=lambda: ["127.0.0.0/8", "::1/128"], description="your own clients")
    replies: ReplyTexts = Field(default_factory=ReplyTexts)
    domains: dict[str, DomainPolicy] = Field(
        default_factory=dict, description='[policy.domains."example.com"] tables')

    @field_validator("local_domains")
    @classmethod
    def _check_local_domains(cls, value: list[str]) -> list[str]:
        try:
            return [_normalise_pattern(entry) for entry in value]
        except AddressError as exc:
            raise ValueError(str(exc)) from None

    @field_validator("local_networks")
    @classmethod
    def _check_local_networks(cls, value: list[str]) -> list[str]:
        for net in value:
            ipaddress.ip_network(net, strict=False)
        return value

    @field_validator("domains")
    @classmethod
    def _check_domains(cls, value: dict[str, DomainPolicy]) -> dict[str, DomainPolicy]:
        return _domain_keys(value, wildcard=True)


class HttpConfig(_Section):
    """The HTTP listener's authentication and limits (docs/http-api.md)."""

    token: str = Field(default="", description=(
        "bearer token for every endpoint but /, /healthz and /openapi.json; required when "
        "server.http listens beyond loopback"))
    max_body_bytes: int = Field(default=1_048_576, ge=1024, le=64 * 1_048_576, description=(
        "larger request bodies are refused with 413"))
    max_bulk: int = Field(default=10_000, ge=1, le=1_000_000, description=(
        "most addresses in one POST /v1/verify"))

    @field_validator("token")
    @classmethod
    def _check_token(cls, value: str) -> str:
        if value and (len(value) < 16 or not all("!" <= c <= "~" for c in value)):
            raise ValueError("the token must be at least 16 printable ASCII characters, "
                             "without spaces")
        return value


class JobsConfig(_Section):
    """Bulk verification jobs (docs/jobs.md): where they queue, how transients are retried."""

    enabled: bool = Field(default=False, description=(
        "this `cbv serve` takes work from the job queue and answers /v1/jobs"))
    queue: str = Field(default="", description=(
        "\"redis://host:port/db\", \"redis+cluster://host:port,...\" or \"sqlite:///path\"; "
        "\"\" is the cache's Redis when cache.url is Redis, else jobs.sqlite3 beside the cache"))
    retry_delays: list[Annotated[float, Field(gt=0, le=86_400)]] = Field(
        default_factory=lambda: [300.0, 900.0, 3600.0], min_length=1, max_length=20,
        description=("seconds before each new attempt at a transient address; the last delay "
                     "repeats until `retry_horizon`"))
    retry_horizon: float = Field(default=21_600.0, gt=0, le=30 * 86_400, description=(
        "seconds after submission past which a transient or budget-limited address is final"))
    keep: float = Field(default=7 * 86_400.0, gt=0, le=365 * 86_400, description=(
        "seconds a finished or cancelled job and its results are kept"))
    concurrency: int = Field(default=50, ge=1, le=10_000, description=(
        "work items (one domain's addresses, one SMTP session's worth) this process verifies "
        "at once"))
    lease: float = Field(default=120.0, ge=1, le=86_400, description=(
        "seconds a work item claimed by a worker that stopped answering waits before another "
        "worker takes it over"))
    webhook_allow: list[str] = Field(default_factory=list, description=(
        "URL prefixes a job's webhook may start with, as \"https://host[:port][/path]\" "
        "(no port: any port of that host); [] refuses every webhook, so an API client cannot "
        "make cbv POST where the operator did not say"))

    @field_validator("webhook_allow")
    @classmethod
    def _check_webhook_allow(cls, value: list[str]) -> list[str]:
        for prefix in value:
            parsed = urllib.parse.urlsplit(prefix)
            if parsed.scheme not in ("http", "https") or not parsed.hostname:
                raise ValueError(f"{prefix!r}: a webhook prefix is http(s)://host[:port][/path]")
        return value

    @field_validator("queue")
    @classmethod
    def _check_queue(cls, value: str) -> str:
        if value and parse_cache_location(value).kind not in QUEUE_KINDS:
            raise ValueError(f"{value!r}: a job queue is redis://, redis+cluster:// or sqlite://")
        return value

    def location(self, cache: CacheConfig) -> CacheLocation:
        """The queue's location: `queue`, else the cache's Redis, else SQLite beside the cache."""
        if self.queue:
            return parse_cache_location(self.queue)
        cached = cache.location()
        if cached.kind in (CacheKind.REDIS, CacheKind.REDIS_CLUSTER):
            return cached
        beside = Path(cached.path).with_name("jobs.sqlite3") if cached.path else None
        return CacheLocation(CacheKind.SQLITE, path=str(beside) if beside else "")


DEFAULT_DNSBL_ZONES = ["zen.spamhaus.org", "bl.spamcop.net", "b.barracudacentral.org",
                       "ips.backscatterer.org"]


class DoctorConfig(_Section):
    """What `cbv doctor` checks against (docs/egress.md)."""

    dnsbl_zones: list[str] = Field(
        default_factory=lambda: list(DEFAULT_DNSBL_ZONES),
        description=(
            "DNS blocklists each egress's public address is looked up in (the last is a "
            "backscatter list)"
        ),
    )
    test_host: str = Field(
        default="gmail-smtp-in.l.google.com:25",
        description="\"host[:port]\" whose SMTP greeting each egress must get",
    )
    timeout: PositiveSeconds = Field(
        default=10.0,
        description="seconds each network check may take",
    )

    @field_validator("dnsbl_zones")
    @classmethod
    def _check_zones(cls, value: list[str]) -> list[str]:
        try:
            return [parse_domain(zone) for zone in value]
        except AddressError as exc:
            raise ValueError(str(exc)) from None

    @field_validator("test_host")
    @classmethod
    def _check_test_host(cls, value: str) -> str:
        split_host_port(value, 25)
        return value

    def test_target(self) -> tuple[str, int]:
        return split_host_port(self.test_host, 25)


class LogConfig(_Section):
    """`cbv serve` logs to stderr, one line per event and per decision."""

    level: Literal["debug", "info", "warning", "error"] = Field(
        default="info",
        description="least severe level logged",
    )
    format: Literal["auto", "json", "text"] = Field(
        default="auto", description="auto: text on a terminal, JSON lines otherwise"
    )


class Config(_Section):
    dns: DnsConfig = Field(default_factory=DnsConfig)
    callout: CalloutConfig = Field(default_factory=CalloutConfig)
    security: SecurityConfig = Field(default_factory=SecurityConfig)
    cache: CacheConfig = Field(default_factory=CacheConfig)
    limits: LimitsConfig = Field(default_factory=LimitsConfig)
    server: ServerConfig = Field(default_factory=ServerConfig)
    policy: PolicyConfig = Field(default_factory=PolicyConfig)
    http: HttpConfig = Field(default_factory=HttpConfig)
    log: LogConfig = Field(default_factory=LogConfig)
    jobs: JobsConfig = Field(default_factory=JobsConfig)
    doctor: DoctorConfig = Field(default_factory=DoctorConfig)


def _describe(error: ValidationError, source: str) -> str:
    first = error.errors()[0]
    location = ".".join(str(part) for part in first["loc"]) or "(top level)"
    if first["type"] == "extra_forbidden":
        message = "unknown key"
    else:
        message = first["msg"].removeprefix("Value error, ")
    more = len(error.errors()) - 1
    suffix = f" (and {more} more)" if more else ""
    return f"{source}: {location}: {message}{suffix}"


def config_from_dict(data: dict[str, Any], source: str = "config") -> Config:
    try:
        config = Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, source)) from None
    http = config.server.endpoints().get("http")
    if http is not None and not config.http.token and not http.is_loopback:
        raise ConfigError(f"{source}: http.token: required when server.http listens beyond "
                          f"loopback ({http})")
    return config


def load_config(path: str | Path | None = None) -> Config:
    """--config, else $CBV_CONFIG, else /etc/cbv/cbv.toml if present, else defaults."""
    chosen = config_source(path)
    if chosen is None:
        return Config()
    return config_from_dict(read_config_file(chosen), str(chosen))
