"""The answer counts /metrics shows read as prometheus_client's own counters and
histogram would show them."""

from __future__ import annotations

import re

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from cbv.policy import Decision
from cbv.policy.decision import Action
from cbv.servers.metrics import DECISION_BUCKETS, LISTENERS, AnswerCounts, Telemetry

REJECTED = Decision(Action.REJECT, "a@b.test", "fail", "mailbox_unknown")
HELD_BACK = Decision(Action.REJECT, "a@b.test", "fail", "mailbox_unknown", dry_run=True)
# Below, on and above bucket bounds, and beyond the last.
DURATIONS = (0.0001, 0.0002, 0.00021, 0.003, 0.5, 10.0, 20.0)


def without_times(exposition: bytes) -> str:
    return re.sub(r"(_created\{[^}]*\}) \S+", r"\1 T", exposition.decode())


def test_answer_counts_read_as_prometheus_metrics() -> None:
    ours = AnswerCounts()
    registry = CollectorRegistry()
    registry.register(ours)
    reference = CollectorRegistry()
    requests = Counter("cbv_requests", "Requests answered, by listener", ["listener"],
                       registry=reference)
    decisions = Counter(
        "cbv_decisions", "Decisions, by listener, result and the action taken; `would` is "
        "the action a dry run kept from happening",
        ["listener", "result", "action", "would"], registry=reference)
    seconds = Histogram("cbv_decision_duration_seconds",
                        "From a request's arrival to its answer", ["listener"],
                        buckets=DECISION_BUCKETS, registry=reference)
    for listener in LISTENERS:
        requests.labels(listener)
        seconds.labels(listener)
    for duration in DURATIONS:
        ours.requests["policy"] += 1
        ours.decided(("policy", "fail", "reject", ""), duration)
        requests.labels("policy").inc()
        seconds.labels("policy").observe(duration)
        decisions.labels("policy", "fail", "reject", "").inc()
    ours.decided(("milter", "fail", "accept", "reject"), 0.5)
    decisions.labels("milter", "fail", "accept", "reject").inc()
    seconds.labels("milter").observe(0.5)

    assert without_times(generate_latest(registry)) == without_times(
        generate_latest(reference))


def test_telemetry_counts_each_answer() -> None:
    telemetry = Telemetry()
    telemetry.answered("policy", REJECTED, 0.001)
    telemetry.answered("policy", HELD_BACK, 0.002)
    telemetry.answered("policy", None, 0.0)
    text = telemetry.exposition().decode()
    assert 'cbv_requests_total{listener="policy"} 3.0' in text
    assert ('cbv_decisions_total{action="reject",listener="policy",result="fail",would=""} '
            '1.0') in text
    assert ('cbv_decisions_total{action="accept",listener="policy",result="fail",'
            'would="reject"} 1.0') in text
    assert 'cbv_decision_duration_seconds_bucket{le="0.001",listener="policy"} 1.0' in text
    assert 'cbv_decision_duration_seconds_count{listener="policy"} 2.0' in text
