"""Several ScriptedMX on distinct loopback addresses sharing one port, as cbv dials them."""

import errno
from collections.abc import Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Self

from cbv.testing.mx_script import MXScript
from cbv.testing.scripted_mx import ScriptedMX

BIND_ATTEMPTS = 20


@dataclass
class MXFarm:
    """cbv uses one configured SMTP port for every MX, so the farm's servers share it."""

    port: int
    servers: dict[str, ScriptedMX]

    async def stop(self) -> None:
        for server in self.servers.values():
            await server.stop()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()


async def start_farm(scripts: Mapping[str, MXScript]) -> MXFarm:
    """Keys are host addresses ("127.0.0.2"); a port taken on any of them means another try."""
    if not scripts:
        raise ValueError("a farm needs at least one host")
    for _ in range(BIND_ATTEMPTS):
        farm = MXFarm(port=0, servers={})
        try:
            for host, script in scripts.items():
                server = ScriptedMX(host=host, port=farm.port, script=script)
                await server.start()
                farm.servers[host] = server
                farm.port = server.port
        except OSError as exc:
            await farm.stop()
            if exc.errno != errno.EADDRINUSE:
                raise
            continue
        return farm
    raise OSError(errno.EADDRINUSE, f"no port free on all of {sorted(scripts)}")
