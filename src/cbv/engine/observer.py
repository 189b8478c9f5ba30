"""What the verifier reports while it works, for whoever counts it (the daemon's metrics).

The engine imports no metrics library: it calls these methods, and the default observer
does nothing.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Literal, Protocol

from cbv.egress.pool import EgressEvent, EgressState
from cbv.model import Verdict

# domain_budget, in_flight: `domain` is the domain; destination_budget: the allowance
# ("ip:...", "net:...", "provider:..."); host_slots and cooling: the MX address.
Limit = Literal["domain_budget", "in_flight", "destination_budget", "host_slots", "cooling"]


class VerifierObserver(Protocol):
    def cache_lookup(self, hit: bool) -> None:
        """A verification looked in the cache first."""

    def limit_wait(self, domain: str, seconds: float) -> None:
        """A callout to `domain` waited for its domain's budget."""

    def limit_refused(self, domain: str, limit: Limit) -> None:
        """A callout to `domain` was not made: a limit gave `rate_limited` instead."""

    def host_cooling(self, ip: str) -> None:
        """The MX address `ip` refused the verifier and starts its cooldown."""

    def callout_started(self) -> None:
        """One SMTP callout (a session, maybe for several addresses) is under way."""

    def callout_finished(self, verdicts: Collection[Verdict], seconds: float) -> None:
        """The callout started last by this task is over; `verdicts` is empty if it failed."""

    def egress_event(self, egress: str, event: EgressEvent) -> None:
        """A callout went through `egress`, was refused, failed, or found it unavailable."""

    def egress_state(self, egress: str, state: EgressState) -> None:
        """`egress` is now in `state`."""


class NoObserver:
    """The default: nothing is counted."""

    def cache_lookup(self, hit: bool) -> None:
        pass

    def limit_wait(self, domain: str, seconds: float) -> None:
        pass

    def limit_refused(self, domain: str, limit: Limit) -> None:
        pass

    def host_cooling(self, ip: str) -> None:
        pass

    def callout_started(self) -> None:
        pass

    def callout_finished(self, verdicts: Collection[Verdict], seconds: float) -> None:
        pass

    def egress_event(self, egress: str, event: EgressEvent) -> None:
        pass

    def egress_state(self, egress: str, state: EgressState) -> None:
        pass


NO_OBSERVER = NoObserver()
