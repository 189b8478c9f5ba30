"""What happens to each address of a work item once verified: pure rules, no I/O.

A verdict that is not transient is final. A `rate_limited` verdict is no verdict in a job:
the address waits for its destination's budget and is not counted as an attempt. Other
transient verdicts (greylisting, temporary failures) are tried again after the job's
retry delays, the last delay repeating. Past the job's horizon, or after MAX_ATTEMPTS
verifications (short delays must not make a job hammer a host), the last verdict is final.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from cbv.jobs.model import Entry, Final, JobSpec, Later, WorkItem
from cbv.model import Reason, Result, Verdict

MAX_ATTEMPTS = 50


@dataclass(slots=True)
class Plan:
    finals: list[Final] = field(default_factory=list)
    later: list[Later] = field(default_factory=list)


def retry_delay(spec: JobSpec, attempts: int) -> float:
    """The wait before attempt `attempts + 1`, given `attempts` made (at least one)."""
    return spec.retry_delays[min(attempts, len(spec.retry_delays)) - 1]


def plan(spec: JobSpec, item: WorkItem, verdicts: Sequence[Verdict], now: float,
         budget_wait: float) -> Plan:
    """`budget_wait`: seconds until the item's destination is likely to take callouts again."""
    decided = Plan()
    waiting: list[Entry] = []
    retries: dict[int, list[Entry]] = {}
    for entry, verdict in zip(item.entries, verdicts, strict=True):
        if verdict.reason is Reason.RATE_LIMITED and now + budget_wait <= spec.deadline:
            waiting.append(entry)
            continue
        attempts = entry.attempts + 1
        if verdict.result is Result.TRANSIENT and verdict.reason is not Reason.RATE_LIMITED:
            delay = retry_delay(spec, attempts)
            if attempts < MAX_ATTEMPTS and now + delay <= spec.deadline:
                retries.setdefault(attempts, []).append(
                    Entry(entry.index, entry.address, attempts))
                continue
        decided.finals.append(Final.of(entry.index, verdict, attempts))
    if waiting:
        decided.later.append(Later(now + budget_wait, WorkItem(item.job, tuple(waiting), True)))
    for attempts, entries in retries.items():
        decided.later.append(Later(now + retry_delay(spec, attempts),
                                   WorkItem(item.job, tuple(entries))))
    return decided
