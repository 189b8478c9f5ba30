"""Fixtures that start the fakes and always stop them, enabled with
`pytest_plugins = ["cbv.testing.pytest_plugin"]`."""

from collections.abc import AsyncIterator, Iterator, Mapping
from typing import Protocol

import pytest
import pytest_asyncio

from cbv.testing.fake_dns import FakeDNS
from cbv.testing.mx_farm import MXFarm, start_farm
from cbv.testing.mx_script import MXScript
from cbv.testing.scripted_mx import ScriptedMX


class MXFactory(Protocol):
    async def __call__(
        self,
        host: str = "127.0.0.2",
        script: MXScript | None = None,
        port: int = 0,
        name: str | None = None,
    ) -> ScriptedMX: ...


class MXFarmFactory(Protocol):
    async def __call__(self, scripts: Mapping[str, MXScript]) -> MXFarm: ...


@pytest.fixture
def fake_dns() -> Iterator[FakeDNS]:
    with FakeDNS() as server:
        yield server


@pytest_asyncio.fixture
async def mx_factory() -> AsyncIterator[MXFactory]:
    started: list[ScriptedMX] = []

    async def factory(
        host: str = "127.0.0.2",
        script: MXScript | None = None,
        port: int = 0,
        name: str | None = None,
    ) -> ScriptedMX:
        server = ScriptedMX(host=host, port=port, script=script, name=name)
        await server.start()
        started.append(server)
        return server

    yield factory
    for server in started:
        await server.stop()


@pytest_asyncio.fixture
async def mx_farm_factory() -> AsyncIterator[MXFarmFactory]:
    started: list[MXFarm] = []

    async def factory(scripts: Mapping[str, MXScript]) -> MXFarm:
        farm = await start_farm(scripts)
        started.append(farm)
        return farm

    yield factory
    for farm in started:
        await farm.stop()
