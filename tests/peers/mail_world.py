"""The loopback world real mail servers are tested in: a fake resolver, a zoo of sender
domains, a sink that every accepted message is delivered to, and `cbv serve` processes.

Everything here is synchronous for the tests (they speak SMTP with smtplib, as a sending
mail server would); the zoo's MX hosts run on an event loop in a thread of their own.
Without root, Postfix or the private Exim the tests skip with one line, or fail under CI=true.
"""

from __future__ import annotations

import asyncio
import contextlib
import email
import email.message
import itertools
import json
import shutil
import signal
import smtplib
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Coroutine, Iterator, Mapping
from dataclasses import dataclass, field
from email.utils import make_msgid
from pathlib import Path
from typing import Any, TypeVar

import pytest
from aiosmtpd.controller import Controller

from bench.mail_servers import PrivateResolver, free_port, private_directory, unavailable
from cbv.testing.zoo import SCENARIOS, ZOO_LIMITS, Zoo, start_zoo
from tests.missing import missing

T = TypeVar("T")
CBV = Path(sys.executable).with_name("cbv")  # the console script an admin runs
WAIT = 20.0
ZOO_SUBNET = 61

# Senders, each at a zoo domain whose MX behaves as its name says.
EXISTING = "alice@accepted.zoo.test"
UNKNOWN = "alice@unknown.zoo.test"
GREYLISTED = "alice@greylisting.zoo.test"
EXCLUDED = "partner@unknown.zoo.test"  # allowlisted: its MX would say "unknown" if asked
RECIPIENT = "bob@example.test"
ZOO_DOMAINS = ("accepted", "unknown", "greylisting", "catch-all")


def require(*servers: str) -> None:
    """Skip (fail under CI=true) with one line when the fake resolver or the `servers`
    named ("postfix", "exim") cannot run here; called at a test module's top, it skips or
    fails the whole module at once."""
    reason = unavailable(*servers)
    if reason is None:
        return
    missing(f"cannot test against real mail servers: {reason}")


class BackgroundLoop:
    """An event loop in a thread, for the asyncio servers that synchronous tests talk to."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True,
                                        name="peer-world")
        self._thread.start()

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(WAIT)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(WAIT)
        self.loop.close()


class Sink:
    """The next hop of every accepted message: it keeps them, for tests to find by id."""

    def __init__(self) -> None:
        self.messages: list[email.message.Message] = []
        self.port = free_port()
        self._arrived = threading.Condition()
        self._controller = Controller(self, hostname="127.0.0.1", port=self.port)

    async def handle_DATA(self, server: object, session: object, envelope: Any) -> str:
        message = email.message_from_bytes(envelope.original_content)
        with self._arrived:
            self.messages.append(message)
            self._arrived.notify_all()
        return "250 2.0.0 Ok: delivered"

    def delivered(self, message_id: str, timeout: float = WAIT) -> email.message.Message:
        def find() -> email.message.Message | None:
            return next((m for m in self.messages if m["Message-ID"] == message_id), None)

        with self._arrived:
            self._arrived.wait_for(lambda: find() is not None, timeout)
        found = find()
        assert found is not None, f"{message_id} was not delivered within {timeout} s"
        return found

    def start(self) -> None:
        self._controller.start()

    def stop(self) -> None:
        self._controller.stop()


@dataclass(frozen=True)
class Sent:
    """Where the SMTP transaction ended: the reply to MAIL, RCPT or the end of DATA."""

    stage: str
    code: int
    text: str
    message_id: str

    @property
    def accepted(self) -> bool:
        return self.stage == "data" and self.code == 250


def send(port: int, sender: str, recipient: str = RECIPIENT, subject: str = "hello") -> Sent:
    """One message, as a sending mail server offers it to the server on `port`."""
    message_id = make_msgid(domain="client.cbv.test")
    body = (f"From: <{sender}>\r\nTo: <{recipient}>\r\nSubject: {subject}\r\n"
            f"Message-ID: {message_id}\r\n\r\nA test message.\r\n")
    with smtplib.SMTP("127.0.0.1", port, local_hostname="client.cbv.test",
                      timeout=WAIT) as smtp:

        def data() -> tuple[int, bytes]:
            try:
                return smtp.data(body.encode())
            except smtplib.SMTPDataError as refused:  # DATA itself refused
                error = refused.smtp_error
                return refused.smtp_code, error if isinstance(error, bytes) else error.encode()

        smtp.ehlo()
        stage, (code, reply) = "mail", smtp.mail(sender)
        if code < 400:
            stage, (code, reply) = "rcpt", smtp.rcpt(recipient)
        if code < 400:
            stage, (code, reply) = "data", data()
    return Sent(stage, code, reply.decode().replace("\n", " "), message_id)


class CbvServe:
    """`cbv serve --config FILE` as an admin runs it; its JSON log lines are collected."""

    def __init__(self, directory: Path, config: str) -> None:
        self.config_path = directory / "cbv.toml"
        self.config_path.write_text(config)
        self.logs: list[dict[str, Any]] = []
        self._changed = threading.Condition()
        self._output = (directory / "cbv.out").open("wb")
        self.process = subprocess.Popen(
            [str(CBV), "serve", "--config", str(self.config_path)],
            stdout=self._output, stderr=subprocess.PIPE, cwd=directory,
        )
        self._reader = threading.Thread(target=self._collect, daemon=True)
        self._reader.start()
        try:
            started = self.wait_for(lambda entry: entry["event"] == "started")
        except AssertionError:
            self.stop()
            raise
        self.addresses = {name: started[name] for name in ("policy", "smtpcbd", "milter", "http")
                          if name in started}

    def _collect(self) -> None:
        assert self.process.stderr is not None
        for raw in self.process.stderr:
            try:
                entry = json.loads(raw)
            except ValueError:  # not a log line: an error before logging was set up
                entry = {"event": "output", "line": raw.decode(errors="replace")}
            with self._changed:
                self.logs.append(entry)
                self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    def wait_for(self, matches: Callable[[dict[str, Any]], bool],
                 timeout: float = WAIT) -> dict[str, Any]:
        def find() -> dict[str, Any] | None:
            return next((entry for entry in self.logs if matches(entry)), None)

        with self._changed:
            self._changed.wait_for(lambda: find() is not None or self.process.poll() is not None,
                                   timeout)
        found = find()
        assert found is not None, f"no such log line from cbv; it logged:\n{self.logs}"
        return found

    def decision(self, address: str) -> dict[str, Any]:
        """The first decision logged about `address`."""
        return self.wait_for(lambda e: e["event"] == "decision" and e["address"] == address)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(WAIT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(WAIT)
        self._reader.join(WAIT)
        self._output.close()


@dataclass
class MailWorld:
    resolver: PrivateResolver
    zoo: Zoo
    sink: Sink
    directory: Path
    _names: Iterator[int] = field(default_factory=itertools.count)

    def callouts(self, address: str) -> int:
        """Sessions in which the zoo's MX hosts were asked about `address`."""
        assert self.zoo.farm is not None
        return sum(1 for server in self.zoo.farm.servers.values() for session in server.log
                   if address in session.rcpts)

    def cbv_settings(self) -> dict[str, Any]:
        """What every `cbv serve` here needs: this world's DNS and zoo, loopback allowed,
        nothing listening yet; the integration under test adds its guide's settings."""
        return {
            "dns": {"nameservers": [f"{self.resolver.dns.host}:53"], "timeout": 2.0},
            "callout": {"port": self.zoo.port, "helo_name": "verifier.cbv.test",
                        "connect_timeout": 2.0, "command_timeout": 2.0, "total_timeout": 6.0},
            "security": {"allowed_target_networks": ["127.0.0.0/8"]},
            "cache": {"url": "memory://"},
            "limits": ZOO_LIMITS,
            "server": {"policy": "", "smtpcbd": ""},
            # the tests' mail comes from loopback, which cbv leaves alone by default
            "policy": {"local_networks": [], "allowlist": [EXCLUDED]},
            "log": {"format": "json"},
        }

    def start_cbv(self, *layers: Mapping[str, Any]) -> CbvServe:
        """`cbv serve` with this world's settings, then each layer's on top."""
        settings = self.cbv_settings()
        for layer in layers:
            settings = merged(settings, layer)
        directory = self.directory / f"cbv-{next(self._names)}"
        directory.mkdir()
        return CbvServe(directory, toml_text(settings))


def merged(base: Mapping[str, Any], layer: Mapping[str, Any]) -> dict[str, Any]:
    result = dict(base)
    for key, value in layer.items():
        if isinstance(value, Mapping) and isinstance(result.get(key), Mapping):
            result[key] = merged(result[key], value)
        else:
            result[key] = value
    return result


def toml_text(settings: Mapping[str, Any], table: str = "") -> str:
    """TOML for nested tables of strings, numbers, booleans and lists of those."""
    lines = [f"[{table}]"] if table else []
    tables = []
    for key, value in settings.items():
        name = json.dumps(key)
        if isinstance(value, Mapping):
            tables.append(toml_text(value, f"{table}.{name}" if table else name))
        else:
            lines.append(f"{name} = {json.dumps(value)}")
    return "\n".join(lines) + "\n\n" + "".join(tables)


@pytest.fixture(scope="session")
def mail_world() -> Iterator[MailWorld]:
    require()
    directory = private_directory("cbv-peers-")
    resolver = PrivateResolver(directory)
    background = BackgroundLoop()
    sink = Sink()
    scenarios = tuple(s for s in SCENARIOS if s.name in ZOO_DOMAINS)
    zoo = background.run(start_zoo(resolver.dns, scenarios, subnet=ZOO_SUBNET))
    sink.start()
    try:
        yield MailWorld(resolver, zoo, sink, directory)
    finally:
        sink.stop()
        background.run(zoo.stop())
        background.stop()
        resolver.stop()
        shutil.rmtree(directory, ignore_errors=True)
    asked = {name for name, _ in resolver.dns.queries}
    assert all(name.endswith(".test") for name in asked), f"asked outside .test: {asked}"


@pytest.fixture(scope="module")
def started() -> Iterator[Callable[[T], T]]:
    """Registers servers (anything with `stop()`) to stop at the end of the module, last
    started first, each even if another one's stop failed."""
    with contextlib.ExitStack() as servers:

        def register(server: T) -> T:
            servers.callback(server.stop)  # type: ignore[attr-defined]
            return server

        yield register


def wait_until(condition: Callable[[], bool], timeout: float = WAIT) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True
