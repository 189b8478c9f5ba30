"""A loopback SMTP server that answers exactly as scripted, however wrongly."""

import asyncio
import time
from collections.abc import Callable
from types import TracebackType
from typing import Self

from cbv.testing.greylist import Greylist
from cbv.testing.mx_script import MXScript
from cbv.testing.mx_session import MXSession
from cbv.testing.session_log import SessionLog

LINE_LIMIT = 1 << 20  # tolerate absurd lines rather than fail the test on them


class ScriptedMX:
    """Stands in for a remote MX so cbv's callout client can be tested against any behaviour.

    The script is read at each new connection, so a test may change it between sessions.
    `clock` is what greylisting by seconds reads: a test can move it on instead of waiting.
    """

    def __init__(
        self,
        host: str = "127.0.0.2",
        port: int = 0,
        script: MXScript | None = None,
        name: str | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.script = script if script is not None else MXScript()
        self.name = name if name is not None else "mx.test"
        self.log: list[SessionLog] = []
        self._host = host
        self._port = port
        self._greylist = Greylist(clock)
        self._server: asyncio.Server | None = None
        self._sessions: set[asyncio.Task[None]] = set()

    @property
    def host(self) -> str:
        return self._host

    @property
    def port(self) -> int:
        return self._port

    @property
    def commands(self) -> list[str]:
        return [command for session in self.log for command in session.commands]

    @property
    def rcpts(self) -> list[str]:
        return [addr for session in self.log for addr in session.rcpts]

    @property
    def connections(self) -> int:
        return len(self.log)

    async def start(self) -> None:
        if self._server is not None:
            raise RuntimeError("already started")
        self._server = await asyncio.start_server(
            self._serve, self._host, self._port, limit=LINE_LIMIT
        )
        self._port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        for task in self._sessions:
            task.cancel()
        await asyncio.gather(*self._sessions, return_exceptions=True)
        await server.wait_closed()

    async def wait_idle(self) -> None:
        """Session flags such as closed_by_client settle only once the server sees the end.

        Bound it with `asyncio.timeout()`: a client that never hangs up keeps it waiting.
        """
        if self._sessions:
            await asyncio.wait(set(self._sessions))

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if self._server is None or task is None:  # accepted just as the server stopped
            writer.close()
            return
        self._sessions.add(task)
        log = SessionLog(peer=writer.get_extra_info("peername")[:2])
        self.log.append(log)
        session = MXSession(self.script, self.name, self._greylist, reader, writer, log)
        try:
            await session.run()
        except (OSError, asyncio.IncompleteReadError):
            log.closed_by_client = True
        except asyncio.CancelledError:
            pass  # only stop() cancels, and Python 3.11 logs a cancelled handler as an error
        finally:
            writer.close()
            log.done = True
            self._sessions.discard(task)
