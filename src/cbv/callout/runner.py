"""One callout: plan the hosts, run sessions in order, turn outcomes into Verdicts."""

from __future__ import annotations

import base64
import secrets
import ssl
import time
from collections.abc import Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Final

from cbv.address import Address, AddressError, parse_address
from cbv.callout.admission import AdmitEveryone, HostAdmission, answered, refusal_of
from cbv.callout.connector import Connector, EgressFailed, FilteredConnector
from cbv.callout.dialogue import ConnectionLost, Dialogue, Outcome, SessionSettings
from cbv.callout.networks import TargetPolicy
from cbv.callout.pacer import TurnPacer
from cbv.callout.plan import Planner, Target
from cbv.callout.refusals import refuses_the_egress
from cbv.callout.session import Route, SessionOptions, TlsHandshakeFailed, run_session
from cbv.callout.socks_connector import EgressConnector
from cbv.config import CalloutConfig, Config, ConfigError
from cbv.dns.resolver import Resolver
from cbv.egress.pool import EgressPool, NoEgress
from cbv.egress.table import Egress
from cbv.model import Reason, SmtpReply, Stage, TranscriptLine, Verdict, utcnow
from cbv.protocol.smtp import Reply

# Callouts that may go on (connect, or read a reply and answer it) in one event-loop turn:
# a wave of 10,000 resumed at once would hold the loop for seconds (callout/pacer.py).
CALLOUTS_PER_TURN = 32


def proxy_handshake_timeout(config: CalloutConfig) -> float:
    """A proxy must take us in within half the connect timeout; the rest is for the target."""
    return config.connect_timeout / 2


def random_local_part() -> str:
    """16 characters of [a-z2-7], 80 random bits, from one read of the OS's CSPRNG
    (secrets.choice per character costs sixteen)."""
    return base64.b32encode(secrets.token_bytes(10)).decode("ascii").lower()


def opportunistic_tls_context() -> ssl.SSLContext:
    """Opportunistic TLS as MTAs do it: encrypt if we can, do not authenticate."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


RECIPIENT_DOMAIN = "{recipient_domain}"

# The domain of the message's recipient, set by a front end that knows it (Postfix policy,
# milter) around a verification; `{recipient_domain}` in `fallback_mail_from` names it.
message_recipient_domain: ContextVar[str | None] = ContextVar(
    "message_recipient_domain", default=None
)


class for_recipient:
    """Verify, inside this block, on behalf of a message to `recipient` (an address).
    A class, not a generator: it wraps every policy and milter decision."""

    __slots__ = ("_domain", "_token")

    def __init__(self, recipient: str) -> None:
        self._domain = _domain_of(recipient) if "@" in recipient else None

    def __enter__(self) -> None:
        self._token = message_recipient_domain.set(self._domain)

    def __exit__(self, *exc_info: object) -> None:
        message_recipient_domain.reset(self._token)


@lru_cache(maxsize=1024)
def _domain_of(recipient: str) -> str | None:
    return recipient.rpartition("@")[2].strip().lower().rstrip(".") or None


def sender_sequence(config: CalloutConfig, recipient_domain: str | None = None) -> tuple[str, ...]:
    """MAIL FROM values in the order tried; "" is the null sender. A template fallback
    takes the recipient's domain, or `helo_name` when there is none."""
    fallback = config.fallback_mail_from
    if RECIPIENT_DOMAIN in fallback:
        fallback = fallback.replace(RECIPIENT_DOMAIN, recipient_domain or config.helo_name)
    elif fallback and "@" not in fallback:
        fallback = f"{fallback}@{config.helo_name}"
    senders: list[str] = []
    if config.mail_from or config.try_null_sender_first:
        senders.append(config.mail_from)
    if fallback and fallback not in senders:
        senders.append(fallback)
    if not senders:
        senders.append("")
    for sender in senders:
        if sender:
            try:
                parse_address(sender)
            except AddressError as exc:
                raise ConfigError(f"callout sender {sender!r}: {exc}") from None
    return tuple(senders)


def smtp_reply(reply: Reply | None) -> SmtpReply | None:
    if reply is None:
        return None
    return SmtpReply(code=reply.code, enhanced=reply.enhanced, text=reply.text)


@dataclass(slots=True)
class DomainKnowledge:
    """Facts about a domain's mail exchangers: hints going into a callout (each spares a
    command or a host) and what a callout learned. None means not known."""

    catch_all: Final[bool | None] = None  # known: no probe, the verdict reports this value
    refuses_null_sender: Final[bool | None] = None  # True: start at the fallback sender
    vrfy_useful: Final[bool | None] = None  # False: skip VRFY even when try_vrfy_first is set
    unreachable: Final[bool | None] = None  # learned only: every host failed to connect
    one_recipient_per_transaction: Final[bool | None] = None  # True: the probe goes alone


NOTHING_KNOWN = DomainKnowledge()


@dataclass(slots=True)
class CalloutReport:
    verdicts: Final[dict[Address, Verdict]]
    learned: Final[DomainKnowledge]


@dataclass(slots=True)
class _Decided:
    outcome: Final[Outcome]
    target: Final[Target | None]


@dataclass(slots=True)
class _Sessions:
    """What the sessions of one callout decided, and what they showed about the domain."""

    decided: dict[Address, _Decided] = field(default_factory=dict)
    sender_index: int = 0
    catch_all: bool | None = None
    vrfy_decisive: bool | None = None
    one_recipient_per_transaction: bool | None = None
    reached_a_host: bool = False
    tried_every_host: bool = False
    egress_refusals: tuple[tuple[Egress, str], ...] = ()  # (egress, host); rarely any


_CONNECT_FAILURES = (Reason.CONNECTION_FAILED, Reason.TIMEOUT)
_BUDGET_EXHAUSTED = _Decided(
    Outcome(Reason.TIMEOUT, Stage.CONNECT, detail="callout budget exhausted"), None)


def _failed_to_connect(dialogue: Dialogue) -> bool:
    failure = dialogue.host_failure
    return (
        failure is not None
        and failure.stage is Stage.CONNECT
        and failure.reason in _CONNECT_FAILURES
        and not dialogue.outcomes
    )


class CalloutRunner:
    """Verifies a group of addresses that share one domain, host by host."""

    def __init__(
        self,
        config: Config,
        resolver: Resolver,
        admission: HostAdmission | None = None,
        connector: Connector | None = None,
        *,
        egresses: EgressPool,
    ) -> None:
        callout = config.callout
        self._config = callout
        self._egresses = egresses
        self._admission: HostAdmission = admission or AdmitEveryone()
        policy = TargetPolicy(config.security.allowed_target_networks)
        self._planner = Planner(callout, resolver, policy)
        self._pacer = TurnPacer(CALLOUTS_PER_TURN)
        self._senders = sender_sequence(callout)
        self._options = SessionOptions(
            connect_timeout=callout.connect_timeout,
            command_timeout=callout.command_timeout,
            max_reply_bytes=callout.max_reply_bytes,
            tls_context=opportunistic_tls_context() if callout.starttls != "never" else None,
            pacer=self._pacer,
        )
        self._connector = FilteredConnector(
            connector or EgressConnector(proxy_handshake_timeout(callout)), policy)
        self._routes: dict[str, Route] = {}

    @property
    def senders(self) -> tuple[str, ...]:
        return self._senders

    @property
    def recheck_catch_all(self) -> bool:
        """Call out to domains known to be catch-all ([callout] recheck_catch_all)."""
        return self._config.recheck_catch_all

    def mx_domain(self, address: Address) -> str:
        return self._config.map.get(address.domain, address.domain)

    async def run_report(
        self,
        addresses: Sequence[Address],
        transcript: bool = False,
        known: DomainKnowledge = NOTHING_KNOWN,
    ) -> CalloutReport:
        """Verdicts for `addresses` (all sharing `mx_domain`), guided by what is `known` of
        the domain, and what this callout learned about it: the hosts of the plan, one
        session each in order until every address is decided.

        One coroutine for the whole callout (each suspended frame is memory and a step on
        every wake-up of a callout in flight). A wave of callouts reaches DNS over several
        event-loop turns already: single-flight starts them so (engine/shared_callouts.py)."""
        started = time.monotonic()
        deadline = started + self._config.total_timeout
        lines: list[TranscriptLine] | None = [] if transcript else None
        first = addresses[0]
        domain = self.mx_domain(first)
        plan = self._planner.known(domain) if first.literal_ip is None else None
        if plan is None:
            plan = await self._planner.plan(domain, first.literal_ip)
        await self._pacer.take_turn()  # connects over several turns when answers come together
        if plan.failure is not None:
            failed = _Sessions(dict.fromkeys(addresses, _Decided(plan.failure, None)))
            return self._report(addresses, failed, known, started, lines)
        targets = plan.targets
        del plan  # what a callout in flight keeps, it keeps for seconds
        sessions = _Sessions(sender_index=self._first_sender(known))
        pending: Sequence[Address] = addresses  # replaced, never changed: no copy kept
        last_failure = _BUDGET_EXHAUSTED
        senders = self._senders_for(message_recipient_domain.get())
        hosts = tuple({target.host: None for target in targets})
        egress = await self._egresses.choose(domain, hosts)
        failed_egresses: tuple[str, ...] = ()
        index = 0
        use_tls = self._options.tls_context is not None
        while pending and index < len(targets) and time.monotonic() < deadline:
            if isinstance(egress, NoEgress):
                last_failure = _Decided(Outcome(
                    Reason.CONNECTION_FAILED if failed_egresses else Reason.RATE_LIMITED,
                    Stage.CONNECT, detail=egress.detail), None)
                sessions.reached_a_host = True  # the domain is not to blame
                break
            target = targets[index]
            dialogue = Dialogue(
                self._settings(target, use_tls, known, sessions, senders, egress), pending,
                sessions.sender_index,
                catch_all=known.catch_all if known.catch_all is not None else sessions.catch_all,
            )
            async with self._admission.admit(target, egress.name) as admission:
                denial = admission.denial
                if denial is not None:
                    dialogue.abandon(ConnectionLost(Stage.CONNECT, denial.reason, denial.detail))
                else:
                    try:
                        await run_session(target, dialogue, self._route(egress),
                                          self._options, deadline, lines)
                    except TlsHandshakeFailed:
                        use_tls = False  # the same host again, in plain text
                        continue
                    except EgressFailed as exc:
                        self._egresses.failed(egress, str(exc))
                        failed_egresses = (*failed_egresses, egress.name)
                        egress = await self._egresses.choose(domain, hosts, failed_egresses)
                        if isinstance(egress, NoEgress):
                            egress = NoEgress(f"{exc}; {egress.detail}")
                        continue  # the same host through the next egress
                    self._egresses.succeeded(egress)
                    await admission.session_over(refusal_of(dialogue), answered(dialogue))
            self._observe(sessions, dialogue, target, egress, admitted=denial is None)
            still = dialogue.undecided
            if dialogue.host_failure is not None or (len(still) == len(pending)
                                                     and not dialogue.unfinished):
                if dialogue.host_failure is not None:
                    last_failure = _Decided(dialogue.host_failure, target)
                index += 1
                use_tls = self._options.tls_context is not None
            pending = still
        sessions.tried_every_host = index >= len(targets)
        sessions.decided.update(dict.fromkeys(pending, last_failure))
        await self._tell_refusals(sessions)
        return self._report(addresses, sessions, known, started, lines)

    def _report(self, addresses: Sequence[Address], sessions: _Sessions,
                known: DomainKnowledge, started: float, lines: list[TranscriptLine] | None
                ) -> CalloutReport:
        verdicts: dict[Address, Verdict] = {}
        for address in addresses:  # a comprehension here made four cells per callout
            verdicts[address] = self._verdict(address, sessions.decided[address], started,
                                              lines)
        return CalloutReport(verdicts, self._learned(sessions, known))

    def _senders_for(self, recipient_domain: str | None) -> tuple[str, ...]:
        """The senders of a callout made for a message to `recipient_domain`."""
        if recipient_domain is None or RECIPIENT_DOMAIN not in self._config.fallback_mail_from:
            return self._senders
        try:
            return sender_sequence(self._config, recipient_domain)
        except ConfigError:  # a recipient domain that makes no address: as if unknown
            return self._senders

    def _first_sender(self, known: DomainKnowledge) -> int:
        skip_null = known.refuses_null_sender and self._senders[0] == ""
        return 1 if skip_null and len(self._senders) > 1 else 0

    def _learned(self, sessions: _Sessions, known: DomainKnowledge) -> DomainKnowledge:
        """NOTHING_KNOWN itself when nothing was learned, as for most callouts: no object
        built, and the store knows it at a glance."""
        first = self._first_sender(known)
        catch_all = sessions.catch_all if known.catch_all is None else None
        null_refused = self._senders[first] == "" and sessions.sender_index > first
        unreachable = sessions.tried_every_host and not sessions.reached_a_host
        if (catch_all is None and not null_refused and sessions.vrfy_decisive is None
                and not unreachable and sessions.one_recipient_per_transaction is None):
            return NOTHING_KNOWN
        return DomainKnowledge(
            catch_all=catch_all,
            refuses_null_sender=True if null_refused else None,
            vrfy_useful=sessions.vrfy_decisive,
            unreachable=True if unreachable else None,
            one_recipient_per_transaction=sessions.one_recipient_per_transaction,
        )

    def _route(self, egress: Egress) -> Route:
        """One Route per egress, not one per session."""
        route = self._routes.get(egress.name)
        if route is None or route.egress is not egress:
            route = self._routes[egress.name] = Route(self._connector, egress)
        return route

    async def _tell_refusals(self, sessions: _Sessions) -> None:
        for refused, host in sessions.egress_refusals:
            await self._egresses.refused(refused, host)

    @staticmethod
    def _observe(sessions: _Sessions, dialogue: Dialogue, target: Target, egress: Egress,
                 admitted: bool) -> None:
        """What a session decided and showed. A host not dialled (busy, over budget,
        cooling) is not evidence that the domain is unreachable."""
        sessions.sender_index = dialogue.sender_index
        if not admitted or not _failed_to_connect(dialogue):
            sessions.reached_a_host = True
        if dialogue.catch_all is not None:
            sessions.catch_all = dialogue.catch_all
        if dialogue.vrfy_decisive is not None:
            sessions.vrfy_decisive = bool(sessions.vrfy_decisive) or dialogue.vrfy_decisive
        if dialogue.one_recipient_per_transaction:
            sessions.one_recipient_per_transaction = True
        outcomes = dialogue.outcomes
        if any(map(refuses_the_egress, (*outcomes.values(), dialogue.host_failure))):
            sessions.egress_refusals += ((egress, target.host),)
        for address, outcome in outcomes.items():
            sessions.decided[address] = _Decided(outcome, target)

    def _settings(
        self, target: Target, use_tls: bool, known: DomainKnowledge, sessions: _Sessions,
        senders: tuple[str, ...], egress: Egress,
    ) -> SessionSettings:
        config = self._config
        probe = config.detect_catch_all and known.catch_all is None and sessions.catch_all is None
        vrfy = config.try_vrfy_first is not False and known.vrfy_useful is not False
        return SessionSettings(
            helo_name=egress.helo_name,
            senders=senders,
            try_vrfy=vrfy,
            force_vrfy=vrfy and config.try_vrfy_first == "always",
            starttls=use_tls,
            probe_local_part=random_local_part() if probe else None,
            max_rcpts=config.max_rcpts_per_session,
            mx_host=target.host,
            one_recipient_per_transaction=bool(
                known.one_recipient_per_transaction or sessions.one_recipient_per_transaction
            ),
        )

    def _verdict(
        self,
        address: Address,
        decided: _Decided,
        started: float,
        lines: list[TranscriptLine] | None,
    ) -> Verdict:
        outcome, target = decided.outcome, decided.target
        return Verdict(
            address=str(address),
            result=outcome.reason.result,
            reason=outcome.reason,
            catch_all=outcome.catch_all,
            mx=target.host if target else None,
            ip=target.ip if target else None,
            port=target.port if target else None,
            stage=outcome.stage,
            reply=smtp_reply(outcome.reply),
            sender=outcome.sender,
            checked_at=utcnow(),
            duration_ms=round((time.monotonic() - started) * 1000, 3),
            transcript=list(lines) if lines is not None else None,
            detail=outcome.detail,
            evidence=outcome.evidence,
        )
