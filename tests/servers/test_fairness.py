"""The fairness scenario of `python -m bench fair` on the test's event loop: 4 connections
pipelining 10,000 cached requests each, one more that resets, 200 stalled 1 MiB milter
packets, and a well-behaved client asking every 50 ms. Only robust bounds are asserted;
the timings are figures for docs/security.md, measured by the benchmark."""

from __future__ import annotations

import asyncio

import pytest

from bench.fair import FLOODERS, STALLED_MILTERS, fair_run
from cbv.servers.event_loop import loop_name

pytestmark = pytest.mark.slow
MAX_RSS_GROWTH_MB = 30
LIVENESS = 5.0  # seconds: answered, however loaded the machine


async def test_a_flood_neither_starves_a_well_behaved_client_nor_bloats_the_daemon() -> None:
    run = await fair_run(loop_name(asyncio.get_running_loop()))

    assert run.flood_answers == FLOODERS * 10_000
    assert len(run.good_delays) > 1, "the well-behaved client was answered during the attack"
    assert max(run.good_delays) < LIVENESS
    assert run.rss_growth_mb < MAX_RSS_GROWTH_MB
    assert run.not_json == [], "every stderr line is JSON"
    assert run.asyncio_lines == 0
    assert run.gone_lines <= 1, "the client that reset is one log line at most"
    assert run.milter_closed == STALLED_MILTERS
