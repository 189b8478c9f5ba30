"""The SQLite file: created owner-only, migrated by version, and intact after kill -9."""

from __future__ import annotations

import asyncio
import signal
import sqlite3
import sys
import time
from pathlib import Path

import pytest

from cbv.address import parse_address
from cbv.cache.backend import CacheError
from cbv.cache.sqlite import SCHEMA_VERSION, SQLiteBackend
from cbv.config import ConfigError, config_from_dict
from cbv.engine.verifier import Verifier
from cbv.model import Result
from cbv.testing import FakeDNS
from tests.cache.helpers import record

ROOT = Path(__file__).resolve().parents[2]
KEPT = 500


def committed_extras(path: Path) -> int:
    with sqlite3.connect(path, timeout=5) as connection:
        count: int = connection.execute(
            "SELECT COUNT(*) FROM addresses WHERE address LIKE 'extra%'"
        ).fetchone()[0]
    return count


async def test_a_new_file_gets_the_current_schema_and_owner_only_access(tmp_path: Path) -> None:
    path = tmp_path / "state" / "cache.sqlite3"
    backend = SQLiteBackend(path)
    await backend.aclose()
    assert path.stat().st_mode & 0o777 == 0o600
    with sqlite3.connect(path) as connection:
        assert connection.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


async def test_a_file_from_a_newer_cbv_is_refused_in_one_line(tmp_path: Path) -> None:
    path = tmp_path / "cache.sqlite3"
    with sqlite3.connect(path) as connection:
        connection.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(CacheError, match="newer than this cbv"):
        SQLiteBackend(path)


async def test_a_file_that_is_not_a_database_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "cache.sqlite3"
    path.write_bytes(b"this is not sqlite" * 100)
    config = config_from_dict({"cache": {"path": str(path)}})
    with pytest.raises(ConfigError, match=r"^cache: .*cache\.sqlite3: not a usable cbv cache"):
        Verifier(config)


async def test_reopening_keeps_the_records(tmp_path: Path) -> None:
    path = tmp_path / "cache.sqlite3"
    first = SQLiteBackend(path)
    await first.put(record("a@example.test", now=time.time()))
    await first.aclose()
    second = SQLiteBackend(path)
    try:
        assert await second.get(parse_address("a@example.test")) is not None
    finally:
        await second.aclose()


async def test_kill_9_mid_write_leaves_an_intact_file_with_every_flushed_record(
    tmp_path: Path, fake_dns: FakeDNS
) -> None:
    path = tmp_path / "cache.sqlite3"
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.cache.sqlite_child", str(path), str(KEPT),
        cwd=ROOT, stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert child.stdout is not None
        async with asyncio.timeout(30):
            assert (await child.stdout.readline()).strip() == b"flushed"
            assert (await child.stdout.readline()).strip() == b"writing"
    finally:
        child.send_signal(signal.SIGKILL)
        async with asyncio.timeout(10):
            await child.wait()
    with sqlite3.connect(path) as connection:
        assert connection.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert committed_extras(path) > 0
    config = config_from_dict({
        "dns": {"nameservers": [fake_dns.nameserver]},
        "cache": {"path": str(path)},
    })
    async with Verifier(config) as verifier:
        verdicts = await verifier.verify_many(f"kept{n}@durable.test" for n in range(KEPT))
    assert all(v.cached and v.result is Result.PASS for v in verdicts)
    assert fake_dns.queries == []  # answered from the file, not by a callout
