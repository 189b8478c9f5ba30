"""What the daemon counts: Prometheus metrics for /metrics, and the recent history the
status page draws. The listeners report each answer here; the verifier reports through
the observer that `engine()` builds for it."""

from __future__ import annotations

import time
from bisect import bisect_left
from collections.abc import Callable, Collection, Iterator, Sequence

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Enum,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from prometheus_client.samples import Sample
from prometheus_client.utils import floatToGoString

from cbv.config import Config
from cbv.egress.pool import EgressEvent, EgressState
from cbv.engine.observer import Limit
from cbv.jobs.model import Final
from cbv.model import Result, Verdict
from cbv.policy import Decision
from cbv.policy.decision import ERROR, Action
from cbv.servers.history import History

LISTENERS = ("policy", "smtpcbd", "milter", "http")
CALLOUT_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
DECISION_BUCKETS = (0.0002, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                    1.0, 2.5, 5.0, 10.0)
_go_float: Callable[[float], str] = floatToGoString  # untyped in prometheus_client
BUCKET_LABELS = tuple(_go_float(bound) for bound in (*DECISION_BUCKETS, float("inf")))
OVERRIDDEN, DEFAULT = "overridden", "default"  # domain classes: has a domain_overrides rate


def what_happened(decision: Decision) -> tuple[str, str]:
    """(the action taken, the action a dry run kept from happening or ""): in a dry run the
    mail server was told to accept, whatever the policy would have done."""
    if decision.dry_run and decision.action is not Action.ACCEPT:
        return Action.ACCEPT.value, decision.action.value
    return decision.action.value, ""


class Latencies:
    """One listener's decision durations, as a Prometheus histogram counts them."""

    __slots__ = ("counts", "created", "total")

    def __init__(self) -> None:
        self.counts = [0] * (len(DECISION_BUCKETS) + 1)  # the last: above every bucket
        self.total = 0.0
        self.created = time.time()

    def observe(self, seconds: float) -> None:
        self.counts[bisect_left(DECISION_BUCKETS, seconds)] += 1
        self.total += seconds

    def buckets(self) -> list[tuple[str, float]]:
        """Cumulative, as the exposition format has them."""
        found, cumulative = [], 0
        for label, count in zip(BUCKET_LABELS, self.counts, strict=True):
            cumulative += count
            found.append((label, float(cumulative)))
        return found


class AnswerCounts(Collector):
    """`cbv_requests`, `cbv_decisions` and `cbv_decision_duration_seconds`, counted in plain
    numbers as the listeners answer and read only when /metrics is: a prometheus_client
    child takes a lock per increment and its histogram looks for the bucket in Python,
    4-5 µs of a cached decision. Counted and read on the event loop's thread alone."""

    def __init__(self) -> None:
        created = time.time()
        self.requests = dict.fromkeys(LISTENERS, 0)
        self._requests_created = created
        self.latencies = {name: Latencies() for name in LISTENERS}
        self.decisions: dict[tuple[str, str, str, str], int] = {}
        self._decisions_created: dict[tuple[str, str, str, str], float] = {}

    def decided(self, key: tuple[str, str, str, str], seconds: float) -> None:
        """A decision by (listener, result, action, would), and its duration. Every
        decision comes here: the duration is counted as `Latencies.observe` counts it,
        without a call of its own."""
        latencies = self.latencies[key[0]]
        latencies.counts[bisect_left(DECISION_BUCKETS, seconds)] += 1
        latencies.total += seconds
        decisions = self.decisions
        if key in decisions:
            decisions[key] += 1
        else:
            decisions[key] = 1
            self._decisions_created[key] = time.time()

    def collect(self) -> Iterator[Metric]:
        requests = CounterMetricFamily(
            "cbv_requests", "Requests answered, by listener", labels=["listener"])
        for listener, count in list(self.requests.items()):
            requests.add_metric([listener], count, created=self._requests_created)
        yield requests
        decisions = CounterMetricFamily(
            "cbv_decisions", "Decisions, by listener, result and the action taken; `would` "
            "is the action a dry run kept from happening",
            labels=["listener", "result", "action", "would"])
        for key, count in list(self.decisions.items()):
            decisions.add_metric(key, count, created=self._decisions_created[key])
        yield decisions
        seconds = HistogramMetricFamily(
            "cbv_decision_duration_seconds", "From a request's arrival to its answer",
            labels=["listener"])
        for listener, latencies in list(self.latencies.items()):
            seconds.add_metric([listener], latencies.buckets(), latencies.total)
            seconds.samples.append(Sample("cbv_decision_duration_seconds_created",
                                          {"listener": listener}, latencies.created))
        yield seconds


class Lookups:
    """One cache backend's lookups."""

    __slots__ = ("created", "hits", "misses")

    def __init__(self) -> None:
        self.hits = 0
        self.misses = 0
        self.created = time.time()


class CacheLookups(Collector):
    """`cbv_cache_lookups`, counted in plain numbers, as `AnswerCounts` counts: nearly every
    request makes a lookup, and a prometheus_client child takes a lock per increment.
    Counted and read on the event loop's thread alone."""

    def __init__(self) -> None:
        self._by_backend: dict[str, Lookups] = {}

    def of(self, backend: str) -> Lookups:
        return self._by_backend.setdefault(backend, Lookups())

    def collect(self) -> Iterator[Metric]:
        lookups = CounterMetricFamily(
            "cbv_cache_lookups", "Verdict cache lookups, by backend and outcome (hit, miss)",
            labels=["backend", "outcome"])
        for backend, counts in list(self._by_backend.items()):
            lookups.add_metric([backend, "hit"], counts.hits, created=counts.created)
            lookups.add_metric([backend, "miss"], counts.misses, created=counts.created)
        yield lookups


class Telemetry:
    """One per daemon, across reloads: counts go on when the configuration changes."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.registry = CollectorRegistry()
        self.history = History(clock)
        self.started = clock()
        r = self.registry
        self.callouts = Counter(
            "cbv_callouts", "Addresses verified by SMTP callout, by verdict",
            ["result", "reason", "stage"], registry=r)
        self.callout_seconds = Histogram(
            "cbv_callout_duration_seconds", "Duration of SMTP callouts (one session each)",
            buckets=CALLOUT_BUCKETS, registry=r)
        self.in_flight = Gauge("cbv_callouts_in_flight", "SMTP callouts under way", registry=r)
        self.cache = CacheLookups()
        r.register(self.cache)
        self.limit_waits = Counter(
            "cbv_rate_limit_waits", "Callouts that waited for their domain's budget",
            ["domain_class"], registry=r)
        self.limit_wait_seconds = Counter(
            "cbv_rate_limit_wait_seconds", "Seconds callouts waited for their domain's budget",
            ["domain_class"], registry=r)
        self.limit_refusals = Counter(
            "cbv_rate_limit_refusals", "Callouts not made because of a limit (rate_limited)",
            ["domain_class", "limit"], registry=r)
        self.cooling_hosts = Gauge(
            "cbv_cooling_hosts", "MX addresses cooling after refusing the verifier (no "
            "callouts to them); counted when /metrics is read, shared through Redis",
            registry=r)
        self.host_refusals = Counter(
            "cbv_host_refusals", "Cooldowns started: an MX address refused the verifier",
            registry=r)
        self.answers = AnswerCounts()
        r.register(self.answers)
        self.errors = Counter(
            "cbv_errors", "Malformed requests, protocol errors and cbv's own failures",
            ["listener", "kind"], registry=r)
        self.job_verdicts = Counter(
            "cbv_job_verdicts", "Final verdicts of bulk job addresses, by result", ["result"],
            registry=r)
        self.job_requeued = Counter(
            "cbv_job_requeued", "Job addresses queued again: for a retry of a transient "
            "verdict, or to wait for a spent budget", ["why"], registry=r)
        self.job_items_in_hand = Gauge(
            "cbv_job_items_in_hand", "Job work items this daemon is verifying", registry=r)
        self.egress_callouts = Counter(
            "cbv_egress_callouts", "Callouts by egress: carried (callout), refused as blocked "
            "or listed, failed (the egress itself), unavailable (resting, over budget)",
            ["egress", "event"], registry=r)
        self.egress_state = Enum(
            "cbv_egress_state", "State of each egress", ["egress"],
            states=[state.value for state in EgressState], registry=r)

    def jobs(self) -> JobTelemetry:
        """The job worker's observer."""
        return JobTelemetry(self)

    def engine(self, config: Config) -> EngineTelemetry:
        """The observer for a Verifier built from `config`."""
        return EngineTelemetry(self, config)

    def answered(self, listener: str, decision: Decision | None, seconds: float) -> None:
        """One well-formed request answered; `decision` None when it was not one cbv
        decides on (and for every HTTP request)."""
        answers = self.answers
        answers.requests[listener] += 1
        if decision is None:
            return
        if decision.dry_run:
            action, would = what_happened(decision)
        else:  # the usual case, without a call: `_value_` is what the `value` property reads
            action, would = decision.action._value_, ""
        answers.decided((listener, decision.result, action, would), seconds)
        if decision.result == ERROR:
            self.errors.labels(listener, "internal_error").inc()
        self.history.decided(listener, decision.address, decision.result, decision.reason,
                             action, seconds, would)

    def looked_up(self, listener: str, verdict: Verdict, seconds: float) -> None:
        """A verdict asked for directly (the HTTP API, whose requests are counted as they
        come): no site policy, so no action."""
        self.answers.latencies[listener].observe(seconds)
        self.history.decided(listener, verdict.address, verdict.result.value,
                             verdict.reason.value, "lookup", seconds)

    def failed(self, listener: str, kind: str) -> None:
        """A malformed request, a protocol error, or cbv's own failure."""
        self.errors.labels(listener, kind).inc()

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class EngineTelemetry:
    """The verifier's observer: labels by the cache backend and domain class of one config."""

    def __init__(self, telemetry: Telemetry, config: Config) -> None:
        self._telemetry = telemetry
        self._history = telemetry.history
        backend = config.cache.location().kind.value
        self._lookups = telemetry.cache.of(backend)
        self._overridden = frozenset(config.limits.domain_overrides)

    def _class(self, domain: str) -> str:
        return OVERRIDDEN if domain in self._overridden else DEFAULT

    def cache_lookup(self, hit: bool) -> None:
        if hit:
            self._lookups.hits += 1
        else:
            self._lookups.misses += 1
        self._history.cache_lookup(hit)

    def limit_wait(self, domain: str, seconds: float) -> None:
        domain_class = self._class(domain)
        self._telemetry.limit_waits.labels(domain_class).inc()
        self._telemetry.limit_wait_seconds.labels(domain_class).inc(seconds)
        self._history.limited(domain, refused=False)

    def limit_refused(self, domain: str, limit: Limit) -> None:
        self._telemetry.limit_refusals.labels(self._class(domain), limit).inc()
        self._history.limited(domain, refused=True)

    def host_cooling(self, ip: str) -> None:
        self._telemetry.host_refusals.inc()

    def callout_started(self) -> None:
        self._telemetry.in_flight.inc()

    def egress_event(self, egress: str, event: EgressEvent) -> None:
        self._telemetry.egress_callouts.labels(egress, event).inc()
        self._history.egress_event(egress, event)

    def egress_state(self, egress: str, state: EgressState) -> None:
        self._telemetry.egress_state.labels(egress).state(state.value)
        self._history.egress_state(egress, state.value)

    def callout_finished(self, verdicts: Collection[Verdict], seconds: float) -> None:
        telemetry = self._telemetry
        telemetry.in_flight.dec()
        telemetry.callout_seconds.observe(seconds)
        self._history.callout(seconds)
        for verdict in verdicts:
            stage = verdict.stage.value if verdict.stage else "none"
            telemetry.callouts.labels(verdict.result.value, verdict.reason.value, stage).inc()


class JobTelemetry:
    """The job worker's observer."""

    def __init__(self, telemetry: Telemetry) -> None:
        self._verdicts = {result: telemetry.job_verdicts.labels(result.value)
                          for result in Result}
        self._retries = telemetry.job_requeued.labels("retry")
        self._budget_waits = telemetry.job_requeued.labels("budget")
        self._in_hand = telemetry.job_items_in_hand

    def settled(self, finals: Sequence[Final], retries: int, budget_waits: int) -> None:
        for final in finals:
            self._verdicts[final.result].inc()
        self._retries.inc(retries)
        self._budget_waits.inc(budget_waits)

    def in_hand(self, items: int) -> None:
        self._in_hand.set(items)
