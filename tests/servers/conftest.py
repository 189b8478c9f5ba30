"""Every test here runs on both event loops the daemon supports: asyncio's own and uvloop
(`[server] event_loop`); uvloop comes with the test extra, so it is never missing."""

from __future__ import annotations

from collections.abc import Mapping

import pytest
import uvloop

from cbv.servers.event_loop import LoopFactory, new_asyncio_loop

LOOPS: Mapping[str, LoopFactory] = {"asyncio": new_asyncio_loop,
                                    "uvloop": uvloop.new_event_loop}


def pytest_asyncio_loop_factories(config: pytest.Config, item: pytest.Item
                                  ) -> Mapping[str, LoopFactory]:
    return LOOPS
