"""The recent past the status page shows: a time series in fixed steps, the latest
decisions, and the domains whose callouts met a rate limit. Memory is bounded whatever the
load: a fixed number of steps, of decisions and of domains."""

from __future__ import annotations

import time
from collections import Counter, OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

STEP = 10.0  # seconds per point of the series
SPAN = 1800.0  # seconds of series kept: 30 minutes
RECENT = 50  # decisions kept
DOMAINS = 1000  # domains under rate-limit pressure remembered, least recent dropped
PRESSURE_WINDOW = 600.0  # a domain counts as under pressure for 10 minutes
PRESSURE_SHOWN = 20


@dataclass(slots=True)
class Step:
    """What happened in one step of time."""

    start: float
    results: Counter[str] = field(default_factory=Counter)
    callouts: int = 0
    callout_seconds: float = 0.0
    callout_max: float = 0.0
    cache_hits: int = 0
    cache_misses: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "t": self.start,
            "results": dict(self.results),
            "callouts": self.callouts,
            "latency_ms_avg": round(self.callout_seconds / self.callouts * 1000, 3)
            if self.callouts else None,
            "latency_ms_max": round(self.callout_max * 1000, 3) if self.callouts else None,
            "cache_hits": self.cache_hits,
            "cache_misses": self.cache_misses,
        }


@dataclass(slots=True)
class Decided:
    """One of the latest decisions, as the page shows it. Kept as the plain tuple of these
    fields, in order, and made when the page reads it: a tuple is made without a call."""

    at: float
    listener: str
    address: str
    result: str
    reason: str
    action: str
    would: str
    seconds: float

    def as_dict(self) -> dict[str, Any]:
        return {"at": self.at, "listener": self.listener, "address": self.address,
                "result": self.result, "reason": self.reason, "action": self.action,
                "would": self.would or None, "duration_ms": round(self.seconds * 1000, 3)}


@dataclass(slots=True)
class EgressCounts:
    """Since the daemon started: callouts through one egress, and what went wrong."""

    state: str = "active"
    callouts: int = 0
    refusals: int = 0
    failures: int = 0
    unavailable: int = 0


EGRESS_FIELDS = {"callout": "callouts", "refused": "refusals", "failed": "failures",
                 "unavailable": "unavailable"}


@dataclass(slots=True)
class Pressure:
    waits: int = 0
    refusals: int = 0
    last: float = 0.0


class History:
    """Fed by the daemon's telemetry as things happen; read by the status page."""

    def __init__(self, clock: Callable[[], float] = time.time, step: float = STEP,
                 span: float = SPAN, recent: int = RECENT, domains: int = DOMAINS) -> None:
        self._clock = clock
        self._step = step
        self._steps: deque[Step] = deque(maxlen=max(1, int(span / step)))
        self._step_ends = 0.0  # when the last step ends: until then, it is the current one
        self._recent: deque[tuple[float, str, str, str, str, str, str, float]] = deque(
            maxlen=recent)
        self._pressure: OrderedDict[str, Pressure] = OrderedDict()
        self._egresses: dict[str, EgressCounts] = {}  # as many as the config names
        self._domains = domains

    def _now_step(self) -> Step:
        return self._step_at(self._clock())

    def _step_at(self, now: float) -> Step:
        """The step `now` falls in. Every decision and cache hit asks, and finds the current
        one: they look at `_step_ends` first themselves, and call this only past it."""
        steps = self._steps
        if now < self._step_ends:
            return steps[-1]
        start = now - now % self._step
        if not steps or steps[-1].start < start:
            steps.append(Step(start))
            self._step_ends = start + self._step
        return steps[-1]

    def decided(self, listener: str, address: str, result: str, reason: str, action: str,
                seconds: float, would: str = "") -> None:
        """`action` is what the mail server was told; `would` what a dry run held back."""
        now = self._clock()
        step = self._steps[-1] if now < self._step_ends else self._step_at(now)
        step.results[result] += 1
        self._recent.append((now, listener, address, result, reason, action, would, seconds))

    def cache_lookup(self, hit: bool) -> None:
        now = self._clock()
        step = self._steps[-1] if now < self._step_ends else self._step_at(now)
        if hit:
            step.cache_hits += 1
        else:
            step.cache_misses += 1

    def callout(self, seconds: float) -> None:
        step = self._now_step()
        step.callouts += 1
        step.callout_seconds += seconds
        step.callout_max = max(step.callout_max, seconds)

    def limited(self, domain: str, refused: bool) -> None:
        entry = self._pressure.pop(domain, None) or Pressure()
        if refused:
            entry.refusals += 1
        else:
            entry.waits += 1
        entry.last = self._clock()
        self._pressure[domain] = entry  # now the most recent
        if len(self._pressure) > self._domains:
            self._pressure.popitem(last=False)

    def egress_event(self, egress: str, event: str) -> None:
        counts = self._egresses.setdefault(egress, EgressCounts())
        field_name = EGRESS_FIELDS[event]
        setattr(counts, field_name, getattr(counts, field_name) + 1)

    def egress_state(self, egress: str, state: str) -> None:
        self._egresses.setdefault(egress, EgressCounts()).state = state

    def snapshot(self) -> dict[str, Any]:
        """Everything the page draws, oldest first; decisions newest first."""
        now = self._clock()
        since = now - PRESSURE_WINDOW
        pressed = [(domain, p) for domain, p in reversed(self._pressure.items())
                   if p.last >= since]
        pressed.sort(key=lambda item: (item[1].refusals, item[1].waits), reverse=True)
        return {
            "now": now,
            "step_seconds": self._step,
            "series": [step.as_dict() for step in self._steps if step.start > now - self.span],
            "recent": [Decided(*decided).as_dict() for decided in reversed(self._recent)],
            "pressure": [{"domain": domain, "waits": p.waits, "refusals": p.refusals,
                          "last": p.last} for domain, p in pressed[:PRESSURE_SHOWN]],
            "egresses": [{"name": name, "state": c.state, "callouts": c.callouts,
                          "refusals": c.refusals, "failures": c.failures,
                          "unavailable": c.unavailable} for name, c in self._egresses.items()],
        }

    @property
    def span(self) -> float:
        return (self._steps.maxlen or 1) * self._step
