"""The Python API: `async with Verifier(config) as v: await v.verify(address)`."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable, Sequence
from types import TracebackType

from cbv.address import Address, AddressError, parse_address
from cbv.callout.runner import CalloutRunner
from cbv.config import Config
from cbv.dns.resolver import DnspythonResolver, Resolver
from cbv.model import Reason, Result, Stage, Verdict, utcnow


def printable(text: str) -> str:
    """Input echoed back in a verdict, with control characters made visible."""
    return "".join(c if c.isprintable() else "?" for c in text)


def syntax_verdict(raw: str, error: AddressError) -> Verdict:
    return Verdict(
        address=printable(raw),
        result=Result.FAIL,
        reason=Reason.BAD_SYNTAX,
        stage=Stage.SYNTAX,
        checked_at=utcnow(),
        detail=str(error),
    )


class Verifier:
    """Verifies addresses by SMTP callout; safe to share across tasks of one event loop."""

    def __init__(self, config: Config | None = None, *, resolver: Resolver | None = None) -> None:
        self.config = config or Config()
        self._resolver = resolver or DnspythonResolver(self.config.dns)
        self._runner = CalloutRunner(self.config, self._resolver)
        self._slots = asyncio.Semaphore(self.config.engine.max_concurrency)

    async def __aenter__(self) -> Verifier:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Nothing to release yet beyond sockets, which close with each session."""

    @property
    def senders(self) -> tuple[str, ...]:
        return self._runner.senders

    async def verify(self, address: str, *, transcript: bool = False) -> Verdict:
        try:
            parsed = parse_address(address)
        except AddressError as exc:
            return syntax_verdict(address, exc)
        verdicts = await self._callout([parsed], transcript)
        return verdicts[parsed]

    async def verify_many(
        self, addresses: Iterable[str], *, transcript: bool = False
    ) -> list[Verdict]:
        """Verdicts in input order; addresses of one domain may share SMTP sessions."""
        items = list(addresses)
        verdicts: list[Verdict | None] = [None] * len(items)
        async for index, verdict in self.iter_verify(items, transcript=transcript):
            verdicts[index] = verdict
        return [v for v in verdicts if v is not None]

    async def iter_verify(
        self, addresses: Sequence[str], *, transcript: bool = False
    ) -> AsyncIterator[tuple[int, Verdict]]:
        """(input index, Verdict) pairs as they complete."""
        positions: dict[Address, list[int]] = {}
        for index, raw in enumerate(addresses):
            try:
                parsed = parse_address(raw)
            except AddressError as exc:
                yield index, syntax_verdict(raw, exc)
                continue
            positions.setdefault(parsed, []).append(index)
        batches = self._batches(list(positions))
        results: asyncio.Queue[dict[Address, Verdict]] = asyncio.Queue()
        queue: asyncio.Queue[list[Address]] = asyncio.Queue()
        for batch in batches:
            queue.put_nowait(batch)

        async def worker() -> None:
            while not queue.empty():
                batch = queue.get_nowait()
                await results.put(await self._callout(batch, transcript))

        workers = [
            asyncio.create_task(worker())
            for _ in range(min(len(batches), self.config.engine.max_concurrency))
        ]
        try:
            for _ in batches:
                for address, verdict in (await results.get()).items():
                    for index in positions[address]:
                        yield index, verdict
        finally:
            for task in workers:
                task.cancel()
            await asyncio.gather(*workers, return_exceptions=True)

    def _batches(self, addresses: list[Address]) -> list[list[Address]]:
        """Group by the domain whose hosts are asked, in session-sized batches."""
        per_session = self.config.callout.max_rcpts_per_session
        if self.config.callout.detect_catch_all:
            per_session = max(1, per_session - 1)
        groups: dict[str, list[Address]] = {}
        for address in addresses:
            groups.setdefault(self._runner.mx_domain(address), []).append(address)
        return [
            group[start : start + per_session]
            for group in groups.values()
            for start in range(0, len(group), per_session)
        ]

    async def _callout(self, addresses: list[Address], transcript: bool) -> dict[Address, Verdict]:
        async with self._slots:
            return await self._runner.run(addresses, transcript)
