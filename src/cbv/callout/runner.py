"""One callout: plan the hosts, run sessions in order, turn outcomes into Verdicts."""

from __future__ import annotations

import secrets
import ssl
import string
import time
from collections.abc import Sequence
from dataclasses import dataclass

from cbv.address import Address, AddressError, parse_address
from cbv.callout.dialogue import Dialogue, Outcome, SessionSettings
from cbv.callout.networks import TargetPolicy
from cbv.callout.plan import Planner, Target
from cbv.callout.session import SessionOptions, TlsHandshakeFailed, run_session
from cbv.config import CalloutConfig, Config, ConfigError
from cbv.dns.resolver import Resolver
from cbv.model import Reason, SmtpReply, Stage, TranscriptLine, Verdict, utcnow
from cbv.protocol.smtp import Reply

_PROBE_ALPHABET = string.ascii_lowercase + string.digits


def random_local_part() -> str:
    return "".join(secrets.choice(_PROBE_ALPHABET) for _ in range(16))


def opportunistic_tls_context() -> ssl.SSLContext:
    """Opportunistic TLS as MTAs do it: encrypt if we can, do not authenticate."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


def sender_sequence(config: CalloutConfig) -> tuple[str, ...]:
    """MAIL FROM values in the order tried; "" is the null sender."""
    fallback = config.fallback_mail_from
    if fallback and "@" not in fallback:
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


@dataclass(frozen=True, slots=True)
class _Decided:
    outcome: Outcome
    target: Target | None


class CalloutRunner:
    """Verifies a group of addresses that share one domain, host by host."""

    def __init__(self, config: Config, resolver: Resolver) -> None:
        callout = config.callout
        self._config = callout
        self._planner = Planner(callout, resolver, TargetPolicy(
            config.security.allowed_target_networks))
        self._senders = sender_sequence(callout)
        self._options = SessionOptions(
            connect_timeout=callout.connect_timeout,
            command_timeout=callout.command_timeout,
            max_reply_bytes=callout.max_reply_bytes,
            tls_context=opportunistic_tls_context() if callout.starttls != "never" else None,
            source_address=callout.source_address,
        )

    @property
    def senders(self) -> tuple[str, ...]:
        return self._senders

    def mx_domain(self, address: Address) -> str:
        return self._config.map.get(address.domain, address.domain)

    async def run(
        self, addresses: Sequence[Address], transcript: bool = False
    ) -> dict[Address, Verdict]:
        """All `addresses` must share `mx_domain`; each gets exactly one Verdict."""
        started = time.monotonic()
        deadline = started + self._config.total_timeout
        lines: list[TranscriptLine] | None = [] if transcript else None
        first = addresses[0]
        plan = await self._planner.plan(self.mx_domain(first), first.literal_ip)
        if plan.failure is not None:
            decided = {a: _Decided(plan.failure, None) for a in addresses}
        else:
            decided = await self._sessions(addresses, plan.targets, deadline, lines)
        return {
            address: self._verdict(address, decided[address], started, lines)
            for address in addresses
        }

    async def _sessions(
        self,
        addresses: Sequence[Address],
        targets: Sequence[Target],
        deadline: float,
        lines: list[TranscriptLine] | None,
    ) -> dict[Address, _Decided]:
        decided: dict[Address, _Decided] = {}
        pending = list(addresses)
        last_failure = _Decided(
            Outcome(Reason.TIMEOUT, Stage.CONNECT, detail="callout budget exhausted"), None
        )
        sender_index = 0
        index = 0
        use_tls = self._options.tls_context is not None
        while pending and index < len(targets) and time.monotonic() < deadline:
            target = targets[index]
            dialogue = Dialogue(self._settings(use_tls), pending, sender_index)
            try:
                await run_session(target, dialogue, self._options, deadline, lines)
            except TlsHandshakeFailed:
                use_tls = False  # the same host again, in plain text
                continue
            sender_index = dialogue.sender_index
            for address, outcome in dialogue.outcomes.items():
                decided[address] = _Decided(outcome, target)
            still = dialogue.undecided
            if dialogue.host_failure is not None or len(still) == len(pending):
                if dialogue.host_failure is not None:
                    last_failure = _Decided(dialogue.host_failure, target)
                index += 1
                use_tls = self._options.tls_context is not None
            pending = still
        for address in pending:
            decided[address] = last_failure
        return decided

    def _settings(self, use_tls: bool) -> SessionSettings:
        config = self._config
        return SessionSettings(
            helo_name=config.helo_name,
            senders=self._senders,
            try_vrfy=config.try_vrfy_first,
            starttls=use_tls,
            probe_local_part=random_local_part() if config.detect_catch_all else None,
            max_rcpts=config.max_rcpts_per_session,
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
        )
