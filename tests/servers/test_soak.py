"""The CI version of `make soak`: a minute of mixed load on `cbv serve`, RSS and open FDs
flat after the warm-up (bench/soak.py defines flat). Once, not on each event loop: the
daemon is a process of its own, on uvloop (`event_loop = "auto"` with the test extra);
tests/servers/test_fairness.py bounds its memory on both loops."""

from __future__ import annotations

import pytest

from bench.soak import soak

pytestmark = [pytest.mark.slow, pytest.mark.asyncio(loop_factories=["uvloop"])]


async def test_a_minute_of_mixed_load_leaves_memory_and_fds_flat() -> None:
    result = await soak(60.0, every=2.0)
    assert result.errors == 0
    assert result.requests > 1000
    first, last = result.thirds()
    assert result.flat, (f"RSS grew {result.rss_growth_mb:.1f} MB, FDs {result.fd_growth}: "
                         f"{first} -> {last}")
