"""What a job is made of: its spec, its work items, its status and its result lines."""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass, field
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

from cbv.model import Result, Verdict


class JobState(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    CANCELLED = "cancelled"


FINISHED = frozenset({JobState.DONE, JobState.CANCELLED})


def new_job_id() -> str:
    return secrets.token_hex(8)


class JobSpec(BaseModel):
    """Fixed at submission; every worker reads it to decide retries."""

    model_config = ConfigDict(frozen=True)

    id: str
    name: str = ""
    webhook: str | None = None
    retry_delays: list[float]
    retry_horizon: float
    total: int
    created_at: float  # epoch seconds

    @property
    def deadline(self) -> float:
        """Past this, transient and budget-limited addresses are final."""
        return self.created_at + self.retry_horizon


class JobStatus(BaseModel):
    id: str
    name: str = ""
    state: JobState
    total: int
    done: int = Field(description="addresses with their final verdict")
    counts: dict[Result, int] = Field(description="final verdicts by result")
    waiting_on_budget: int = Field(
        description="addresses waiting for a destination's callout budget to free")
    created_at: float
    finished_at: float | None = None
    rate: float = Field(description="final verdicts per second since submission")
    eta_seconds: float | None = Field(
        description="seconds until done at the current rate; null when unknown or finished")

    @classmethod
    def build(cls, spec: JobSpec, state: JobState, counts: dict[Result, int], waiting: int,
              finished_at: float | None, now: float) -> JobStatus:
        done = sum(counts.values())
        elapsed = (finished_at or now) - spec.created_at
        rate = done / elapsed if elapsed > 0 else 0.0
        left = spec.total - done
        eta = left / rate if rate > 0 and state not in FINISHED else None
        return cls(id=spec.id, name=spec.name, state=state, total=spec.total, done=done,
                   counts={result: counts.get(result, 0) for result in Result},
                   waiting_on_budget=max(waiting, 0), created_at=spec.created_at,
                   finished_at=finished_at, rate=round(rate, 3),
                   eta_seconds=None if eta is None else round(eta, 1))


class JobVerdict(Verdict):
    """One line of a job's results: the final Verdict and how many callouts it took."""

    attempts: int = Field(description="verifications of this address in the job")


@dataclass(frozen=True, slots=True)
class Entry:
    index: int  # the address's position in the submitted list
    address: str
    attempts: int = 0  # verifications so far


@dataclass(frozen=True, slots=True)
class WorkItem:
    """Addresses of one domain, at most one SMTP session's worth, verified together."""

    job: str
    entries: tuple[Entry, ...]
    budget: bool = False  # re-queued to wait for a budget, not for a retry delay
    nonce: str = field(default_factory=lambda: secrets.token_hex(6))

    def to_json(self) -> str:
        return json.dumps({"job": self.job, "budget": self.budget, "nonce": self.nonce,
                           "entries": [[e.index, e.address, e.attempts] for e in self.entries]},
                          separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str | bytes) -> WorkItem:
        data = json.loads(text)
        entries = tuple(Entry(int(i), str(a), int(n)) for i, a, n in data["entries"])
        return cls(str(data["job"]), entries, bool(data["budget"]), str(data["nonce"]))


@dataclass(frozen=True, slots=True)
class Final:
    """An address's last verdict, as its result line."""

    index: int
    result: Result
    line: str  # JobVerdict JSON

    @classmethod
    def of(cls, index: int, verdict: Verdict, attempts: int) -> Final:
        fields = verdict.model_dump(exclude={"smtp_cbv_result", "transcript"})
        line = JobVerdict(**fields, attempts=attempts).model_dump_json()
        return cls(index, verdict.result, line)


@dataclass(frozen=True, slots=True)
class Later:
    """A work item to queue again once `ready_at` (epoch seconds) has come."""

    ready_at: float
    item: WorkItem
