from collections.abc import AsyncIterator

import pytest_asyncio

from cbv.testing import ScriptedMX
from tests.testing.raw_smtp import Connect, RawSMTP


@pytest_asyncio.fixture
async def connect() -> AsyncIterator[Connect]:
    """Raw SMTP clients, all closed after the test."""
    clients: list[RawSMTP] = []

    async def open_client(mx: ScriptedMX, host: str | None = None) -> RawSMTP:
        client = await RawSMTP.connect(mx, host)
        clients.append(client)
        return client

    yield open_client
    for client in clients:
        await client.close()
