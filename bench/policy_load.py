"""Postfix-like load: persistent connections, one request in flight on each.

`closed_loop` sends the next request as soon as the answer is in (the server's maximum
rate); `open_loop` sends at a fixed total rate and measures each answer from the moment
the request was due, so a server that falls behind is charged for the wait.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field


class PolicyClient(asyncio.Protocol):
    """A connection that knows only where an answer ends."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.waiter: asyncio.Future[bytes] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        end = self.buffer.find(b"\n\n")
        if end >= 0 and self.waiter is not None and not self.waiter.done():
            answer = bytes(self.buffer[:end])
            del self.buffer[: end + 2]
            self.waiter.set_result(answer)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(ConnectionError("server closed the connection"))

    async def ask(self, request: bytes) -> bytes:
        assert self.transport is not None
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(request)
        return await self.waiter

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


async def connect(address: str, count: int) -> list[PolicyClient]:
    host, _, port = address.rpartition(":")
    loop = asyncio.get_running_loop()
    clients = []
    for _ in range(count):
        _, client = await loop.create_connection(PolicyClient, host, int(port))
        clients.append(client)
    return clients


def request(sender: str, instance: int) -> bytes:
    """What Postfix sends at RCPT, with a new message (instance) each time."""
    return (
        "request=smtpd_access_policy\nprotocol_state=RCPT\nprotocol_name=ESMTP\n"
        "client_address=192.0.2.25\nclient_name=mail.sender.example\nclient_port=40312\n"
        "reverse_client_name=mail.sender.example\nserver_address=127.0.0.1\nserver_port=25\n"
        f"helo_name=mail.sender.example\nsender={sender}\nrecipient=bob@example.test\n"
        f"recipient_count=0\nqueue_id=\ninstance={instance:x}.6553f1a2.3c4d5.0\nsize=0\n"
        "etrn_domain=\nstress=\nsasl_method=\nsasl_username=\nsasl_sender=\nccert_subject=\n"
        "ccert_issuer=\nccert_fingerprint=\nccert_pubkey_fingerprint=\nencryption_protocol=\n"
        "encryption_cipher=\nencryption_keysize=0\npolicy_context=\n\n"
    ).encode()


def requests_for(senders: Sequence[str], count: int) -> list[bytes]:
    return [request(senders[n % len(senders)], n) for n in range(count)]


@dataclass
class Run:
    answered: int = 0
    seconds: float = 0.0
    latencies_ms: list[float] = field(default_factory=list)
    answers: Counter[str] = field(default_factory=Counter)

    @property
    def rate(self) -> float:
        return self.answered / self.seconds if self.seconds else 0.0

    def percentile(self, share: float) -> float:
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(share * len(ordered)))] if ordered else 0.0


def _kind(answer: bytes) -> str:
    return answer.decode()[len("action="):].split(" ")[0]


async def closed_loop(clients: list[PolicyClient], requests: list[bytes], seconds: float
                      ) -> Run:
    run = Run()
    feed = itertools.cycle(requests)
    deadline = time.perf_counter() + seconds

    async def drive(client: PolicyClient) -> None:
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            answer = await client.ask(next(feed))
            run.latencies_ms.append((time.perf_counter() - started) * 1000)
            run.answers[_kind(answer)] += 1

    started = time.perf_counter()
    await asyncio.gather(*(drive(c) for c in clients))
    run.seconds = time.perf_counter() - started
    run.answered = len(run.latencies_ms)
    return run


async def open_loop(clients: list[PolicyClient], requests: list[bytes], rate: float,
                    seconds: float) -> Run:
    """Request n is due at start + n / rate, on connection n mod len(clients)."""
    run = Run()
    total = int(rate * seconds)
    start = time.perf_counter() + 0.05

    async def drive(index: int, client: PolicyClient) -> None:
        for n in range(index, total, len(clients)):
            due = start + n / rate
            wait = due - time.perf_counter()
            if wait > 0:
                await asyncio.sleep(wait)
            answer = await client.ask(requests[n % len(requests)])
            run.latencies_ms.append((time.perf_counter() - due) * 1000)
            run.answers[_kind(answer)] += 1

    await asyncio.gather(*(drive(i, c) for i, c in enumerate(clients)))
    run.seconds = time.perf_counter() - start
    run.answered = len(run.latencies_ms)
    return run
