"""`cbv serve` as an admin runs it (`make serve`): a process, its output, its signals."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest_asyncio

from cbv.config import DEFAULT_CONFIG_PATH
from cbv.servers.event_loop import loop_name
from cbv.testing import MXFarm
from tests.missing import missing
from tests.servers.clients import DOMAINS, PolicyClient, policy_request, sender_domains, smtpcbd
from tests.waiting import at_rcpt, until
from tests.world import World

CBV = Path(sys.executable).with_name("cbv")  # the console script `make serve` runs
REPOSITORY = Path(__file__).resolve().parents[2]
WAIT = 15.0


def clean_env(home: Path) -> dict[str, str]:
    """Nothing from the user's own setup: HOME and the state directory are the test's."""
    env = {k: v for k, v in os.environ.items() if k not in ("CBV_CONFIG", "XDG_STATE_HOME")}
    env.update(HOME=str(home / "home"), XDG_STATE_HOME=str(home / "state"))
    return env


class Served:
    """A running `cbv serve` whose stderr (JSON log lines) is collected as it comes."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.logs: list[dict[str, object]] = []
        self._new_log = asyncio.Event()
        self._reader = asyncio.create_task(self._collect())

    @classmethod
    async def start(cls, *args: str, env: dict[str, str], cwd: Path,
                    wrap: Callable[[list[str]], list[str]] = list) -> Served:
        process = await asyncio.create_subprocess_exec(
            *wrap([str(CBV), "serve", *args]), env=env, cwd=cwd,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
        return cls(process)

    async def announced(self) -> list[str]:
        assert self.process.stdout is not None
        async with asyncio.timeout(WAIT):
            return [(await self.process.stdout.readline()).decode().rstrip("\n")
                    for _ in range(2)]

    async def _collect(self) -> None:
        assert self.process.stderr is not None
        async for raw in self.process.stderr:
            self.logs.append(json.loads(raw))  # every stderr line is a JSON object
            self._new_log.set()

    async def log_event(self, name: str, after: int = 0) -> dict[str, object]:
        async with asyncio.timeout(WAIT):
            while True:
                for entry in self.logs[after:]:
                    if entry["event"] == name:
                        return entry
                self._new_log.clear()
                await self._new_log.wait()

    def signal(self, number: int) -> None:
        self.process.send_signal(number)

    async def exit_code(self) -> int:
        async with asyncio.timeout(WAIT):
            code = await self.process.wait()
            await self._reader
        return code

    def kill(self) -> None:
        if self.process.returncode is None:
            self.process.kill()


@pytest_asyncio.fixture
async def served() -> AsyncIterator[list[Served]]:
    started: list[Served] = []
    yield started
    for process in started:
        process.kill()
        await process.process.wait()


def in_own_network(argv: list[str]) -> list[str]:
    """`argv` in a network namespace with only loopback: the default ports are free there
    whatever listens on this machine (a `make serve` too), and nothing else is reachable."""
    return ["unshare", "--net", "sh", "-c", 'ip link set lo up && exec "$@"', "sh", *argv]


ASK_THE_DEFAULT_LISTENERS = """
import asyncio, json
from tests.servers.clients import PolicyClient, smtpcbd

async def main() -> None:
    client = await PolicyClient.connect("127.0.0.1:10040")
    policy = await client.ask("")
    await client.close()
    print(json.dumps([policy, await smtpcbd("127.0.0.1:4571", b"<>\\n")]))

asyncio.run(main())
"""


async def ask_in_network_of(pid: int) -> list[str]:
    """The default listeners' answers, asked from inside the network namespace of `pid`."""
    process = await asyncio.create_subprocess_exec(
        "nsenter", "--target", str(pid), "--net", sys.executable, "-c",
        ASK_THE_DEFAULT_LISTENERS, cwd=REPOSITORY, stdout=asyncio.subprocess.PIPE)
    async with asyncio.timeout(WAIT):
        out, _ = await process.communicate()
    assert process.returncode == 0
    answers: list[str] = json.loads(out)
    return answers


async def test_make_serve_with_no_config_at_all(tmp_path: Path, served: list[Served]) -> None:
    if DEFAULT_CONFIG_PATH.exists():
        missing(f"{DEFAULT_CONFIG_PATH} exists, so this machine has a config")
    if os.geteuid() != 0:
        missing("a network namespace of its own, where the default ports are free, needs root")
    daemon = await Served.start(env=clean_env(tmp_path), cwd=tmp_path, wrap=in_own_network)
    served.append(daemon)
    assert await daemon.announced() == [
        "cbv: policy listening on 127.0.0.1:10040 (Postfix check_policy_service)",
        "cbv: smtpcbd listening on 127.0.0.1:4571 (qpsmtpd smtp_callback, Exim readsocket)",
    ]
    started = await daemon.log_event("started")
    assert started["config"] == "built-in defaults"
    policy, smtpcbd_answer = await ask_in_network_of(daemon.process.pid)
    assert policy == "DUNNO"
    assert smtpcbd_answer.startswith("OK:not checked (null sender)")
    daemon.signal(signal.SIGTERM)
    assert await daemon.exit_code() == 0
    assert (await daemon.log_event("stopped"))["level"] == "info"
    assert list((tmp_path / "state" / "cbv").iterdir()), "the SQLite cache is in the state dir"
    assert not (tmp_path / "home").exists() or not any((tmp_path / "home").rglob("*.sqlite*"))


async def test_the_started_line_names_the_config_from_the_environment(
    world: World, tmp_path: Path, served: list[Served]
) -> None:
    farm = await sender_domains(world)
    config = tmp_path / "from-env.toml"
    write_config(config, world, farm)
    env = {**clean_env(tmp_path), "CBV_CONFIG": str(config)}
    daemon = await Served.start(env=env, cwd=tmp_path)
    served.append(daemon)
    assert (await daemon.log_event("started"))["config"] == str(config)


def write_config(path: Path, world: World, farm: MXFarm, policy: str = "") -> None:
    """The daemon on the event loop the test runs on (the tests here run on each)."""
    path.write_text(world.toml(farm.port, "total_timeout = 5.0") + f"""
[cache]
url = "memory://"
[server]
policy = "127.0.0.1:0"
smtpcbd = "127.0.0.1:0"
event_loop = "{loop_name(asyncio.get_running_loop())}"
[policy]
{policy}
""")


async def test_serve_reload_and_stop_by_signals(
    world: World, tmp_path: Path, served: list[Served]
) -> None:
    farm = await sender_domains(world)
    config = tmp_path / "cbv.toml"
    write_config(config, world, farm)
    daemon = await Served.start("--config", str(config), env=clean_env(tmp_path), cwd=tmp_path)
    served.append(daemon)
    policy_line, smtpcbd_line = await daemon.announced()
    started = await daemon.log_event("started")
    assert started["event_loop"] == loop_name(asyncio.get_running_loop())
    policy_address = policy_line.split(" ")[4]
    smtpcbd_address = smtpcbd_line.split(" ")[4]

    client = await PolicyClient.connect(policy_address)
    assert (await client.ask("nobody@fail.test")).startswith("550 5.1.7 undeliverable address")
    assert (await smtpcbd(smtpcbd_address, b"<nobody@fail.test>\n")).startswith("FAIL:")
    decision = await daemon.log_event("decision")
    assert {k: decision[k] for k in ("level", "listener", "address", "result", "reason",
                                     "action", "cached")} == {
        "level": "info", "listener": "policy", "address": "nobody@fail.test", "result": "fail",
        "reason": "mailbox_unknown", "action": "reject", "cached": False}
    assert isinstance(decision["duration_ms"], float)

    seen = len(daemon.logs)
    write_config(config, world, farm, 'on_fail = "accept"\nadd_header = true')
    daemon.signal(signal.SIGHUP)
    await daemon.log_event("configuration reloaded", after=seen)
    assert (await client.ask("nobody@fail.test")).startswith(
        "PREPEND X-CBV-Result: fail reason=mailbox_unknown"), "same connection, new policy"

    seen = len(daemon.logs)
    config.write_text(config.read_text().replace("[policy]", "[policy]\nphase = 'later'"))
    daemon.signal(signal.SIGHUP)
    refused = await daemon.log_event("reload refused, configuration unchanged", after=seen)
    assert refused["level"] == "error"
    assert "policy.phase: Input should be 'mailfrom' or 'rcptto'" in str(refused["error"])
    assert (await client.ask("nobody@fail.test")).startswith("PREPEND X-CBV-Result: fail")

    await client.send(policy_request("someone@slow.test"))
    slow = farm.servers[DOMAINS["slow.test"][0]]
    await until(lambda: at_rcpt(slow), "the callout is at RCPT")
    daemon.signal(signal.SIGTERM)
    assert (await client.answer()).startswith("PREPEND X-CBV-Result: fail reason=mailbox_unknown")
    assert await client.closed_by_server()
    assert await daemon.exit_code() == 0


async def test_a_bad_config_is_one_line_and_exit_2(tmp_path: Path) -> None:
    config = tmp_path / "cbv.toml"
    config.write_text("[server]\npolicy = 'localhost'\n")
    process = await asyncio.create_subprocess_exec(
        str(CBV), "serve", "--config", str(config), env=clean_env(tmp_path),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    async with asyncio.timeout(WAIT):
        out, err = await process.communicate()
    assert process.returncode == 2
    assert out == b""
    assert err.decode() == (f"cbv: error: {config}: server.policy: 'localhost': expected "
                            "host:port, [ipv6]:port or unix:/path\n")


async def test_a_port_in_use_is_one_line_and_exit_2(tmp_path: Path) -> None:
    blocker = socket.socket()
    blocker.bind(("127.0.0.1", 0))
    blocker.listen()
    port = blocker.getsockname()[1]
    config = tmp_path / "cbv.toml"
    config.write_text(f"[cache]\nurl = 'memory://'\n[server]\npolicy = '127.0.0.1:{port}'\n"
                      "smtpcbd = '127.0.0.1:0'\n")
    try:
        process = await asyncio.create_subprocess_exec(
            str(CBV), "serve", "--config", str(config), env=clean_env(tmp_path),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        async with asyncio.timeout(WAIT):
            out, err = await process.communicate()
    finally:
        blocker.close()
    assert process.returncode == 2
    assert out == b""
    assert err.decode() == (
        f"cbv: error: policy listener: cannot listen on 127.0.0.1:{port}: Address already in use\n")
