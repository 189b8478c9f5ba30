"""The jobs benchmark's queue measurement at a tiny scale, against our own redis-server:
both rounds carry every item through. No timing is asserted."""

from __future__ import annotations

import pytest

from bench.jobs import Scale, bare_round, queue_round
from cbv.jobs.model import JobState

TINY = Scale(queue_items=30)


@pytest.mark.peers
async def test_the_queue_and_bare_rounds_carry_every_item(redis_url: str) -> None:
    _, status = await queue_round(redis_url, TINY, per_item=10)
    assert (status.state, status.done, status.total) == (JobState.DONE, 300, 300)
    _, acked = await bare_round(redis_url, TINY, per_item=10)
    assert acked == 30
