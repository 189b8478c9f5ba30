"""What the job worker reports while it works, for whoever counts it (the daemon's
metrics); the jobs package imports no metrics library."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from cbv.jobs.model import Final


class JobObserver(Protocol):
    def settled(self, finals: Sequence[Final], retries: int, budget_waits: int) -> None:
        """A work item settled: its final verdicts, and how many of its addresses went back
        to the queue for a retry or to wait on a budget."""

    def in_hand(self, items: int) -> None:
        """Work items this worker is verifying now."""


class NoJobObserver:
    def settled(self, finals: Sequence[Final], retries: int, budget_waits: int) -> None:
        """Nobody counts."""

    def in_hand(self, items: int) -> None:
        """Nobody counts."""


NO_JOB_OBSERVER = NoJobObserver()
