"""When an egress rests: refused as blocked or listed by enough different hosts in a window.

Pure bookkeeping on a clock the caller passes in; the shared (Redis) version runs the same
rule in a script.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from cbv.providers import provider_of

PRUNE_ABOVE = 1_000


@dataclass(frozen=True, slots=True)
class RestRule:
    rest_after: int  # different refusing hosts
    window: float  # seconds over which they are counted
    rest: float  # seconds the egress then rests


@dataclass
class RefusalTracker:
    rule: RestRule
    _refusals: dict[str, dict[str, float]] = field(default_factory=dict)
    _resting_until: dict[str, float] = field(default_factory=dict)

    def refused(self, egress: str, host: str, now: float) -> float:
        """Count a refusal; seconds the egress now rests, 0 when it does not (yet)."""
        if self.resting(egress, now):
            return 0.0
        seen = self._refusals.setdefault(egress, {})
        seen[provider_of(host)] = now
        horizon = now - self.rule.window
        if len(seen) > PRUNE_ABOVE or any(at < horizon for at in seen.values()):
            seen = self._refusals[egress] = {h: at for h, at in seen.items() if at >= horizon}
        if len(seen) < self.rule.rest_after:
            return 0.0
        del self._refusals[egress]
        self._resting_until[egress] = now + self.rule.rest
        return self.rule.rest

    def resting(self, egress: str, now: float) -> bool:
        until = self._resting_until.get(egress)
        if until is None:
            return False
        if until <= now:
            del self._resting_until[egress]
            return False
        return True
