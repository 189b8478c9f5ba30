"""`cbv cache ...` and `cbv verify --no-cache` as a user runs them."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from cbv.cache.records import Fact
from cbv.cache.sqlite import SQLiteBackend
from cbv.cli.main import cli
from cbv.model import Reason
from cbv.testing import MXScript
from tests.cache.helpers import record
from tests.world import World

CBV = [sys.executable, "-m", "cbv.cli"]
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    path = tmp_path / "cbv.toml"
    path.write_text(f'[cache]\npath = "{tmp_path / "cache.sqlite3"}"\n')
    return path


@pytest.fixture
def filled(config_file: Path) -> Path:
    async def fill() -> None:
        backend = SQLiteBackend(config_file.parent / "cache.sqlite3")
        now = time.time()
        await backend.put(record("alice@one.test", now=now))
        await backend.put(record("bob@one.test", Reason.MAILBOX_UNKNOWN, now=now))
        await backend.put(record("carol@two.test", Reason.GREYLISTED, now=now))
        await backend.learn("one.test", {"catch_all": Fact(False, now + 60)})
        await backend.aclose()

    asyncio.run(fill())
    return config_file


def cbv(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_stats_counts_by_result(filled: Path) -> None:
    code, out, _ = cbv("cache", "stats", "--config", str(filled), "--json")
    assert code == 0
    stats = json.loads(out)
    assert stats["addresses"] == 3
    assert stats["by_result"] == {"pass": 1, "fail": 1, "transient": 1}
    assert stats["domains_with_facts"] == 1
    assert stats["backend"].startswith("sqlite://") and stats["size_bytes"] > 0
    code, out, _ = cbv("cache", "stats", "--config", str(filled))
    assert code == 0 and "addresses          3" in out


def test_show_prints_the_cached_verdict_or_exits_1(filled: Path) -> None:
    code, out, _ = cbv("cache", "show", "--config", str(filled), "alice@one.test")
    shown = json.loads(out)
    assert code == 0
    assert (shown["address"], shown["result"], shown["cached"]) == ("alice@one.test", "pass", True)
    assert shown["refresh_at"] < shown["expires_at"]
    code, _, err = cbv("cache", "show", "--config", str(filled), "nobody@one.test")
    assert (code, err.strip()) == (1, "not cached: nobody@one.test")


def test_purge_an_address_a_domain_or_everything(filled: Path) -> None:
    assert cbv("cache", "purge", "--config", str(filled), "alice@one.test")[1] == (
        "purged 1 cached verdict\n")
    assert cbv("cache", "purge", "--config", str(filled), "@ONE.test")[1] == (
        "purged 1 cached verdict\n")
    assert cbv("cache", "purge", "--config", str(filled), "--all")[1] == (
        "purged 1 cached verdict\n")
    assert json.loads(cbv("cache", "stats", "--config", str(filled), "--json")[1])[
        "addresses"] == 0


def test_export_writes_one_json_verdict_per_line(filled: Path) -> None:
    code, out, _ = cbv("cache", "export", "--config", str(filled), "--format", "jsonl")
    lines = [json.loads(line) for line in out.splitlines()]
    assert code == 0
    assert [line["address"] for line in lines] == ["alice@one.test", "bob@one.test",
                                                   "carol@two.test"]
    assert all(line["cached"] and "refresh_at" in line for line in lines)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["purge"], "cbv: error: purge takes one ADDRESS, one @DOMAIN, or --all"),
        (["purge", "--all", "a@b.test"], "cbv: error: purge takes one ADDRESS"),
        (["purge", "not an address"], "cbv: error: 'not an address': address has no '@'"),
        (["purge", "@bad_domain!"], "cbv: error: '@bad_domain!': bad domain label"),
        (["show", "a@"], "cbv: error: 'a@': empty domain"),
    ],
)
def test_bad_arguments_are_one_line_errors(
    config_file: Path, args: list[str], message: str
) -> None:
    code, _, err = cbv("cache", *args[:1], "--config", str(config_file), *args[1:])
    assert code == 2
    assert err.startswith(message) and err.count("\n") == 1


def test_a_bad_cache_url_or_file_is_a_one_line_error(tmp_path: Path) -> None:
    config = tmp_path / "cbv.toml"
    config.write_text('[cache]\nurl = "mongodb://x"\n')
    code, _, err = cbv("cache", "stats", "--config", str(config))
    assert code == 2 and err.startswith(f"cbv: error: {config}: cache.url: unsupported scheme")
    (tmp_path / "junk.sqlite3").write_bytes(b"junk" * 1000)
    config.write_text(f'[cache]\npath = "{tmp_path / "junk.sqlite3"}"\n')
    code, _, err = cbv("cache", "stats", "--config", str(config))
    assert code == 2 and "not a usable cbv cache" in err and err.count("\n") == 1


def test_an_unreachable_redis_is_a_one_line_error(tmp_path: Path) -> None:
    config = tmp_path / "cbv.toml"
    config.write_text('[cache]\nurl = "redis://127.0.0.1:1/0"\nredis_timeout = 0.5\n')
    code, _, err = cbv("cache", "stats", "--config", str(config))
    assert code == 2
    assert err.startswith("cbv: error: cannot use redis at redis://127.0.0.1:1/0")
    assert err.count("\n") == 1


async def run_cbv(*args: str) -> tuple[int | None, str]:
    """A real process: the test's own event loop serves the fake MX meanwhile."""
    process = await asyncio.create_subprocess_exec(
        *CBV, *args, cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(30):
        out, _ = await process.communicate()
    return process.returncode, out.decode()


async def run_verify(config: Path, *extra: str) -> dict[str, object]:
    code, out = await run_cbv("verify", "--json", "--config", str(config), *extra,
                              "alice@example.test")
    assert code == 0
    verdict: dict[str, object] = json.loads(out)
    return verdict


async def test_verify_no_cache_neither_reads_nor_stores(world: World, tmp_path: Path) -> None:
    farm = await world.mx("example.test", {"127.0.0.2": MXScript(catch_all=True)})
    config = tmp_path / "cbv.toml"
    config.write_text(world.toml(farm.port) + f"""
[cache]
path = "{tmp_path / 'cache.sqlite3'}"
""")
    first = await run_verify(config, "--no-cache")
    assert first["cached"] is False
    assert (await run_cbv("cache", "show", "--config", str(config), "alice@example.test")) == (
        1, "")
    stored = await run_verify(config)
    answered = await run_verify(config)
    bypassed = await run_verify(config, "--no-cache")
    assert (stored["cached"], answered["cached"], bypassed["cached"]) == (False, True, False)
    assert farm.servers["127.0.0.2"].rcpts.count("alice@example.test") == 3


def test_cache_cooling_needs_redis_and_says_where_to_look(tmp_path: Path) -> None:
    toml = tmp_path / "cbv.toml"
    toml.write_text('[cache]\nurl = "memory://"\n')
    result = CliRunner().invoke(cli, ["cache", "cooling", "--config", str(toml)])
    assert (result.exit_code, result.stdout) == (2, "")
    assert result.stderr.startswith("cbv: error: cooling MX hosts are shared only through Redis")
    assert result.stderr.count("\n") == 1
    result = CliRunner().invoke(cli, ["cache", "cooling", "--forget", "not-an-ip",
                                      "--config", str(toml)])
    assert result.exit_code == 2
    assert result.stderr == ("cbv: error: 'not-an-ip' is not an IP address (or 'IP via "
                             "EGRESS', as listed)\n")
