"""Picks the egress for each callout: its route's pool in turn, skipping egresses that rest,
are over budget or just failed; counts what each egress did, for /metrics and the status page.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Literal, Protocol

from cbv.egress.routes import EgressRoutes
from cbv.egress.table import Egress

log = logging.getLogger("cbv.egress")

FAILED_RETRY = 30.0  # seconds before a failed egress is tried first again

Unavailable = Literal["resting", "daily budget spent", "per-minute budget spent"]
EgressEvent = Literal["callout", "refused", "failed", "unavailable"]


class EgressState(StrEnum):
    ACTIVE = "active"
    RESTING = "resting"
    OVER_BUDGET = "over_budget"
    FAILING = "failing"  # its last connection attempt failed (proxy down, bad credentials)


class EgressLedger(Protocol):
    """Budgets and rests of egresses, shared by every process using the same Redis."""

    async def take(self, egress: Egress) -> Unavailable | None:
        """Count one callout through `egress`, or say why it cannot carry one now."""
        ...

    async def refused(self, egress: Egress, host: str) -> float:
        """`host` refused `egress` as blocked or listed: seconds it now rests (0: not yet)."""
        ...


class EgressObserver(Protocol):
    def egress_event(self, egress: str, event: EgressEvent) -> None:
        """A callout went through `egress`, was refused, failed, or found it unavailable."""

    def egress_state(self, egress: str, state: EgressState) -> None:
        """`egress` is now in `state`."""


class NoEgressObserver:
    def egress_event(self, egress: str, event: EgressEvent) -> None:
        pass

    def egress_state(self, egress: str, state: EgressState) -> None:
        pass


@dataclass(frozen=True, slots=True)
class NoEgress:
    """Why no egress could carry a callout; the callout answers transient."""

    detail: str


_STATE_OF: dict[Unavailable, EgressState] = {
    "resting": EgressState.RESTING,
    "daily budget spent": EgressState.OVER_BUDGET,
    "per-minute budget spent": EgressState.OVER_BUDGET,
}


class EgressPool:
    def __init__(
        self,
        egresses: Sequence[Egress],
        routes: EgressRoutes,
        ledger: EgressLedger,
        observer: EgressObserver | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.egresses = tuple(egresses)
        self._routes = routes
        self._ledger = ledger
        self._observer = observer or NoEgressObserver()
        self._clock = clock
        self._turns: dict[str, int] = {}
        self._failed_until: dict[str, float] = {}  # failing egresses wait their retry
        self._states = {egress.name: EgressState.ACTIVE for egress in self.egresses}
        for egress in self.egresses:
            self._observer.egress_state(egress.name, EgressState.ACTIVE)

    def state(self, name: str) -> EgressState:
        return self._states[name]

    def _set_state(self, egress: Egress, state: EgressState) -> None:
        if self._states[egress.name] is not state:
            self._states[egress.name] = state
            self._observer.egress_state(egress.name, state)

    async def choose(
        self, domain: str, hosts: Iterable[str], tried: Collection[str] = ()
    ) -> Egress | NoEgress:
        """The next egress of the route's pool that may carry this callout; the pool is used
        in turn, so its egresses share the traffic. An egress that just failed is tried only
        once `FAILED_RETRY` has passed, or when no other egress is left."""
        key, pool = self._routes.pool_for(domain, hosts)
        turn = self._turns.get(key, 0)
        self._turns[key] = turn + 1
        start = turn % len(pool)
        ordered = pool[start:] + pool[:start]
        if self._failed_until:
            ordered = self._failing_last(ordered)
        why: list[str] = []
        for egress in ordered:
            if egress.name in tried:
                continue
            unavailable = await self._ledger.take(egress)
            if unavailable is None:
                if self._states[egress.name] is not EgressState.FAILING:
                    self._set_state(egress, EgressState.ACTIVE)
                self._observer.egress_event(egress.name, "callout")
                return egress
            self._set_state(egress, _STATE_OF[unavailable])
            self._observer.egress_event(egress.name, "unavailable")
            why.append(f"{egress.name} {unavailable}")
        if not why:
            return NoEgress(f"every egress for {domain} failed")
        return NoEgress(f"no egress may carry a callout to {domain} now: {', '.join(why)}")

    def _failing_last(self, ordered: Sequence[Egress]) -> tuple[Egress, ...]:
        """Failing egresses go last until their retry time. Out of `choose`: these
        comprehensions there made three cells on every callout."""
        now = self._clock()
        healthy = [e for e in ordered if self._failed_until.get(e.name, now) <= now]
        return (*healthy, *(e for e in ordered if e not in healthy))

    def succeeded(self, egress: Egress) -> None:
        """A connection through `egress` was opened: it works again."""
        self._failed_until.pop(egress.name, None)
        if self._states[egress.name] is EgressState.FAILING:
            log.warning("egress %s works again", egress.name)
            self._set_state(egress, EgressState.ACTIVE)

    def failed(self, egress: Egress, detail: str) -> None:
        """The egress could not open a connection (its proxy); the callout tries the next."""
        self._failed_until[egress.name] = self._clock() + FAILED_RETRY
        if self._states[egress.name] is not EgressState.FAILING:
            log.warning("%s; callouts move to the next egress", detail)
        self._set_state(egress, EgressState.FAILING)
        self._observer.egress_event(egress.name, "failed")

    async def refused(self, egress: Egress, host: str) -> None:
        """`host` refused `egress` as blocked or listed."""
        self._observer.egress_event(egress.name, "refused")
        rest = await self._ledger.refused(egress, host)
        if rest:
            log.warning("egress %s refused as blocked or listed by several hosts (last %s); "
                        "it rests %.0f s", egress.name, host, rest)
            self._set_state(egress, EgressState.RESTING)
