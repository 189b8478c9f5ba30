"""What stands between a callout and each connection it makes: the host's cooldown, the
budgets of its address, network and provider, and its cap on sessions open at once.

In that order, so a cooling host spends no budget and a session waiting for a budget holds
no slot. A host that refused someone while this session waited is looked up again
before the dial.
"""

from __future__ import annotations

import asyncio
import logging
import time
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import UTC, datetime
from types import TracebackType
from typing import Final

from cbv.callout.admission import Admission, Denial
from cbv.callout.plan import Target
from cbv.config import LimitsConfig
from cbv.egress.settings import DEFAULT_EGRESS
from cbv.engine.budgets import Allowance, allowances
from cbv.engine.cooldown import Standing
from cbv.engine.limits import CalloutLimits
from cbv.engine.observer import VerifierObserver
from cbv.model import Reason

LOG = logging.getLogger("cbv.engine")
STANDING_FRESH_FOR = 0.01  # seconds: a standing older than this is read again before dialling
ALLOWANCES_REMEMBERED = 10_000  # targets whose budgets are kept built, not rebuilt per session


@dataclass(slots=True)
class _Ticket:
    """One admission: what the session reports goes to the cooldown."""

    gate: Final[DestinationGate]
    target: Final[Target]
    cooling_key: Final[str]
    denial: Final[Denial | None]
    strikes: Final[int]

    async def session_over(self, refusal: str | None, answered: bool) -> None:
        await self.gate.session_over(self, refusal, answered)


def _describe(target: Target) -> str:
    return f"{target.host}[{target.ip}]"


def cooling_key(ip: str, egress: str) -> str:
    """What a cooldown is kept for: the MX address, and the egress when it is not the
    default one (another source address may still be welcome)."""
    return ip if egress == DEFAULT_EGRESS else f"{ip} via {egress}"


def blocked_denial(target: Target, standing: Standing) -> Denial:
    until = datetime.fromtimestamp(standing.until, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    return Denial(Reason.VERIFIER_BLOCKED,
                  f"{_describe(target)} refused this verifier ({standing.detail}); "
                  f"no callout to it until {until}")


class _Admitting:
    """One `DestinationGate.admit`: a class, so a callout builds no generator for it."""

    __slots__ = ("_slot", "egress", "gate", "target")

    def __init__(self, gate: DestinationGate, target: Target, egress: str) -> None:
        self.gate = gate
        self.target = target
        self.egress = egress
        self._slot: AbstractAsyncContextManager[bool] | None = None

    async def hold(self, slot: AbstractAsyncContextManager[bool]) -> bool:
        """Enter the host's slot pool; it is left when the admission ends."""
        held = await slot.__aenter__()
        self._slot = slot
        return held

    async def __aenter__(self) -> Admission:
        try:
            return await self.gate._enter(self)
        except BaseException as exc:
            await self.__aexit__(type(exc), exc, exc.__traceback__)
            raise

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, traceback: TracebackType | None) -> None:
        slot, self._slot = self._slot, None
        if slot is not None:
            await slot.__aexit__(exc_type, exc, traceback)


class DestinationGate:
    """The engine's HostAdmission."""

    def __init__(self, config: LimitsConfig, limits: CalloutLimits,
                 observer: VerifierObserver) -> None:
        self._config = config
        self._cooldown = limits.cooldown
        self._budget = limits.destinations
        self._first_look = limits.first_look
        self._slots = limits.hosts
        self._observer = observer
        self._allowances: dict[Target, tuple[Allowance, ...]] = {}

    def allowances(self, target: Target) -> tuple[Allowance, ...]:
        found = self._allowances.get(target)
        if found is None:
            if len(self._allowances) >= ALLOWANCES_REMEMBERED:
                self._allowances.clear()
            found = self._allowances[target] = allowances(target, self._config)
        return found

    async def free_in(self, target: Target, egress: str = DEFAULT_EGRESS) -> float:
        """Seconds until a callout to `target` would go without waiting, nothing taken:
        its budgets, or its cooldown while it cools (for schedulers of bulk work)."""
        standing = await self._cooldown.standing(cooling_key(target.ip, egress))
        budgets = await self._budget.free_in(self.allowances(target))
        return max(budgets, standing.until - standing.now if standing.cooling else 0.0)

    def admit(self, target: Target, egress: str) -> _Admitting:
        return _Admitting(self, target, egress)

    async def _enter(self, admitting: _Admitting) -> _Ticket:
        """Cooldown, then budgets, then a host slot (held by `admitting` until it exits)."""
        target = admitting.target
        checked = time.monotonic()
        key = cooling_key(target.ip, admitting.egress)
        standing, reserved = await self._first_look.look(key, self.allowances(target))
        if reserved is None:
            return self._blocked(target, key, standing)
        if isinstance(reserved, Allowance):
            self._observer.limit_refused(reserved.name, "destination_budget")
            return _Ticket(self, target, key, Denial(
                Reason.RATE_LIMITED,
                f"{_describe(target)}: the callout budget of {reserved.label} is spent; "
                "not calling out now"), standing.strikes)
        if reserved:
            self._observer.limit_wait(target.ip, reserved)
            await asyncio.sleep(reserved)
        if not await admitting.hold(self._slots.hold(f"mx:{target.ip}")):
            self._observer.limit_refused(target.ip, "host_slots")
            return _Ticket(self, target, key, Denial(
                Reason.RATE_LIMITED,
                f"{_describe(target)}: too many callouts in flight to this host"),
                standing.strikes)
        if time.monotonic() - checked > STANDING_FRESH_FOR:
            standing = await self._cooldown.standing(key)
            if standing.cooling:
                return self._blocked(target, key, standing)
        return _Ticket(self, target, key, None, standing.strikes)

    def _blocked(self, target: Target, key: str, standing: Standing) -> _Ticket:
        self._observer.limit_refused(target.ip, "cooling")
        return _Ticket(self, target, key, blocked_denial(target, standing), standing.strikes)

    async def session_over(self, ticket: _Ticket, refusal: str | None, answered: bool) -> None:
        target = ticket.target
        if refusal is not None:
            standing = await self._cooldown.refused(ticket.cooling_key, refusal)
            if standing is not None:
                LOG.warning("%s[%s] refused this verifier (%s): no callouts to it for %.0f s "
                            "(refusal %d in a row)", target.host, ticket.cooling_key, refusal,
                            standing.until - standing.now, standing.strikes)
                self._observer.host_cooling(ticket.cooling_key)
        elif answered and ticket.strikes:
            await self._cooldown.succeeded(ticket.cooling_key)
