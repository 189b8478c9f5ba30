import socket

import pytest

from cbv.testing import MXScript, Reply, ScriptedMX, mx_farm, start_farm
from cbv.testing.pytest_plugin import MXFarmFactory
from tests.testing.raw_smtp import Connect

TEMPFAIL = Reply(421, "4.3.2 Service not available")


async def test_farm_shares_one_port_across_addresses(
    connect: Connect, mx_farm_factory: MXFarmFactory
) -> None:
    farm = await mx_farm_factory(
        {"127.0.0.2": MXScript(banner=TEMPFAIL), "127.0.0.3": MXScript(catch_all=True)}
    )
    assert {mx.port for mx in farm.servers.values()} == {farm.port}
    primary = await connect(farm.servers["127.0.0.2"])
    assert (await primary.reply())[0] == 421
    backup = await connect(farm.servers["127.0.0.3"], host="127.0.0.3")
    assert (await backup.reply())[0] == 220
    assert farm.servers["127.0.0.2"].connections == 1
    assert farm.servers["127.0.0.3"].connections == 1
    await primary.close()
    await backup.close()


async def test_farm_retries_when_its_port_is_taken_on_another_address(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.3", 0))
        squatter.listen()
        taken = squatter.getsockname()[1]
        first_ports = iter([taken])  # steer the first try into the squatter
        built: list[int] = []

        class SteeredMX(ScriptedMX):
            def __init__(self, host: str, port: int, script: MXScript) -> None:
                port = port or next(first_ports, 0)
                built.append(port)
                super().__init__(host=host, port=port, script=script)

        monkeypatch.setattr(mx_farm, "ScriptedMX", SteeredMX)
        async with await start_farm({"127.0.0.2": MXScript(), "127.0.0.3": MXScript()}) as farm:
            assert farm.port != taken
            assert built == [taken, taken, 0, farm.port]


async def test_empty_farm_is_refused() -> None:
    with pytest.raises(ValueError, match="at least one host"):
        await start_farm({})
