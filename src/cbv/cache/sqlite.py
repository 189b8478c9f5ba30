"""The embedded default: one SQLite file in WAL mode, written in batches by a thread.

The event loop never waits on the disk: writes go to a queue that a writer thread
commits in batches; lookups that miss the memory tier run on a reader thread, those of
one event-loop turn together (cache/reader_thread.py). A committed batch survives kill -9
(WAL, synchronous=NORMAL). The memory tier keeps hot records, and each domain's facts as
last read, for `memory_ttl` seconds, so a purge from another process (the CLI) reaches a
running daemon within that time.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import os
import queue
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import platformdirs

from cbv.address import Address
from cbv.cache.backend import CacheError, Clock
from cbv.cache.memory_tier import MemoryTier
from cbv.cache.reader_thread import ReaderThread
from cbv.cache.records import (
    BadRecords,
    CachedVerdict,
    CacheStats,
    Fact,
    dump_verdict,
    load_verdict,
    unexpired,
)

log = logging.getLogger("cbv.cache")

T = TypeVar("T")

DEFAULT_FILE_NAME = "cache.sqlite3"
SQLITE_HEADER = b"SQLite format 3\x00"
BUSY_TIMEOUT_MS = 5_000
BATCH_LIMIT = 1_000
PRUNE_INTERVAL = 600.0
EXPORT_CHUNK = 1_000

# Migration N takes the schema from version N to N + 1 (PRAGMA user_version).
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE addresses (
        address TEXT PRIMARY KEY,
        domain TEXT NOT NULL,
        result TEXT NOT NULL,
        refresh_at REAL NOT NULL,
        expires_at REAL NOT NULL,
        verdict TEXT NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX addresses_by_domain ON addresses (domain);
    CREATE INDEX addresses_by_expiry ON addresses (expires_at);
    CREATE TABLE domain_facts (
        domain TEXT NOT NULL,
        fact TEXT NOT NULL,
        value INTEGER NOT NULL,
        expires_at REAL NOT NULL,
        PRIMARY KEY (domain, fact)
    ) WITHOUT ROWID;
    """,
)
SCHEMA_VERSION = len(MIGRATIONS)

Job = Callable[[sqlite3.Connection], Any]


def default_cache_path() -> Path:
    return Path(platformdirs.user_state_dir("cbv")) / DEFAULT_FILE_NAME


def _connect(path: Path) -> sqlite3.Connection:
    connection = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    connection.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    connection.execute("PRAGMA journal_mode = WAL")
    connection.execute("PRAGMA synchronous = NORMAL")
    return connection


def _migrate(connection: sqlite3.Connection, path: Path) -> None:
    version = connection.execute("PRAGMA user_version").fetchone()[0]
    if version > SCHEMA_VERSION:
        raise CacheError(
            f"{path}: cache schema version {version} is newer than this cbv "
            f"understands ({SCHEMA_VERSION})"
        )
    for step in range(version, SCHEMA_VERSION):
        try:
            connection.executescript(
                f"BEGIN IMMEDIATE; {MIGRATIONS[step]}; PRAGMA user_version = {step + 1}; COMMIT;"
            )
        except sqlite3.OperationalError:
            if connection.in_transaction:
                connection.execute("ROLLBACK")
            # Another process migrated at the same moment; accept its work if it is done.
            if connection.execute("PRAGMA user_version").fetchone()[0] < step + 1:
                raise


def _is_sqlite_file(path: Path) -> bool:
    with path.open("rb") as file:
        return file.read(len(SQLITE_HEADER)) == SQLITE_HEADER


def _damage(path: Path) -> str | None:
    """Why an SQLite file is damaged (PRAGMA quick_check), or None when it is sound."""
    try:
        with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as connection:
            connection.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            rows = connection.execute("PRAGMA quick_check").fetchall()
    except sqlite3.DatabaseError as exc:
        return str(exc)
    problems = [str(row[0]) for row in rows if row[0] != "ok"]
    return "; ".join(problems[:3]) or None


def _set_aside(path: Path) -> Path:
    """Move a damaged cache and its WAL out of the way, keeping them for inspection."""
    stamp = time.strftime("%Y%m%dT%H%M%S")
    aside = path.with_name(f"{path.name}.corrupt-{stamp}")
    for suffix in ("", "-wal", "-shm"):
        source = Path(f"{path}{suffix}")
        if source.exists():
            source.replace(Path(f"{aside}{suffix}"))
    return aside


def _start_sound(path: Path) -> None:
    """A cache file that SQLite says is damaged is set aside and cbv starts with an empty
    one: a cache is worth less than the mail flow. A file that is not SQLite at all is left
    alone (the path is probably wrong) and refused when opened."""
    if not path.exists() or path.stat().st_size == 0 or not _is_sqlite_file(path):
        return
    damage = _damage(path)
    if damage is None:
        return
    aside = _set_aside(path)
    log.error("cache %s is damaged (%s); moved it to %s and started an empty cache",
              path, damage, aside)


def _open(path: Path) -> sqlite3.Connection:
    """Create the file owner-only (it holds addresses), then bring its schema up to date."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        _start_sound(path)
        os.close(os.open(path, os.O_CREAT | os.O_RDWR, 0o600))
        connection = _connect(path)
        _migrate(connection, path)
    except sqlite3.DatabaseError as exc:
        raise CacheError(f"{path}: not a usable cbv cache: {exc}") from None
    except OSError as exc:
        raise CacheError(f"{path}: cannot open the cache: {exc.strerror or exc}") from None
    return connection


def _row_record(verdict: str, refresh_at: float, expires_at: float) -> CachedVerdict:
    """Raises ValueError for a row that does not hold a record (see BadRecords)."""
    return CachedVerdict(load_verdict(verdict), float(refresh_at), float(expires_at))


class _Writer(threading.Thread):
    """Runs write jobs in order, many per transaction; a job's future resolves after commit."""

    def __init__(self, connection: sqlite3.Connection, clock: Clock) -> None:
        super().__init__(name="cbv-sqlite-writer", daemon=True)
        self._connection = connection
        self._clock = clock
        self.jobs: queue.SimpleQueue[tuple[Job, concurrent.futures.Future[Any] | None] | None]
        self.jobs = queue.SimpleQueue()
        self._next_prune = 0.0
        self._failed = False

    def run(self) -> None:
        while True:
            first = self.jobs.get()
            if first is None:
                break
            batch = [first]
            while len(batch) < BATCH_LIMIT:
                try:
                    item = self.jobs.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    self._commit(batch)
                    return
                batch.append(item)
            self._commit(batch)
        self._connection.close()

    def _commit(self, batch: list[tuple[Job, concurrent.futures.Future[Any] | None]]) -> None:
        results: list[tuple[concurrent.futures.Future[Any] | None, Any, BaseException | None]] = []
        try:
            self._connection.execute("BEGIN IMMEDIATE")
            for job, future in batch:
                try:
                    results.append((future, job(self._connection), None))
                except sqlite3.Error as exc:
                    results.append((future, None, exc))
            self._prune_now_and_then()
            self._connection.execute("COMMIT")
            self._failed = False
        except sqlite3.Error as exc:
            if self._connection.in_transaction:
                self._connection.execute("ROLLBACK")
            if not self._failed:
                log.error("cache writes failing (%s); verdicts are not being stored", exc)
            self._failed = True
            results = [(future, None, exc) for _, future in batch]
        for future, value, error in results:
            if future is None:
                continue
            if error is None:
                future.set_result(value)
            else:
                future.set_exception(CacheError(f"cache write failed: {error}"))

    def _prune_now_and_then(self) -> None:
        now = self._clock()
        if now < self._next_prune:
            return
        self._next_prune = now + PRUNE_INTERVAL
        self._connection.execute("DELETE FROM addresses WHERE expires_at <= ?", (now,))
        self._connection.execute("DELETE FROM domain_facts WHERE expires_at <= ?", (now,))


class SQLiteBackend:
    def __init__(
        self,
        path: Path | None = None,
        *,
        memory_entries: int = 100_000,
        memory_ttl: float = 30.0,
        clock: Clock = time.time,
    ) -> None:
        self.path = path or default_cache_path()
        self._clock = clock
        self._tier: MemoryTier[CachedVerdict] = MemoryTier(memory_entries, memory_ttl, clock)
        # Every callout asks for its domain's facts; most domains have none, and a domain's
        # addresses come in runs, so what was read is kept (empty too) as records are.
        self._facts: MemoryTier[dict[str, Fact]] = MemoryTier(memory_entries, memory_ttl, clock)
        self._changes = 0  # learns and purges so far: what a read one overtook is not kept
        self._reader = ReaderThread(_open(self.path))
        self._writer = _Writer(_connect(self.path), clock)
        self._writer.start()
        self._bad_records = BadRecords(self.description)
        self._closed = False

    @property
    def description(self) -> str:
        return f"sqlite://{self.path}"

    async def _read(self, query: Callable[[sqlite3.Connection], T]) -> T:
        return await self._reader.read(query)

    def _write(self, job: Job) -> None:
        self._writer.jobs.put((job, None))

    async def _write_and_wait(self, job: Callable[[sqlite3.Connection], T]) -> T:
        future: concurrent.futures.Future[T] = concurrent.futures.Future()
        self._writer.jobs.put((job, future))
        result: T = await asyncio.wrap_future(future)
        return result

    def peek(self, address: Address) -> CachedVerdict | None:
        """From the memory tier only."""
        key = str(address)
        now = self._clock()
        held = self._tier.get(key, now)
        if held is None:
            return None
        if now < held.expires_at:
            return held
        self._tier.pop(key)
        return None

    async def get(self, address: Address) -> CachedVerdict | None:
        held = self.peek(address)
        if held is not None:
            return held
        key = str(address)
        now = self._clock()

        def query(connection: sqlite3.Connection) -> tuple[str, float, float] | None:
            row: tuple[str, float, float] | None = connection.execute(
                "SELECT verdict, refresh_at, expires_at FROM addresses "
                "WHERE address = ? AND expires_at > ?",
                (key, now),
            ).fetchone()
            return row

        changes = self._changes
        row = await self._read(query)
        landed = self.peek(address)  # put while the reader read: newer than the row
        if landed is not None:
            return landed
        if row is None:
            return None
        try:
            record = _row_record(*row)
        except ValueError as exc:
            self._bad_records.report(key, exc)
            return None
        if changes == self._changes:
            self._tier.put(record.address, record)
        return record

    async def put(self, record: CachedVerdict) -> None:
        self._tier.put(record.address, record)
        values = (
            record.address,
            record.domain,
            record.verdict.result.value,
            record.refresh_at,
            record.expires_at,
            dump_verdict(record.verdict),
        )
        self._write(
            lambda connection: connection.execute(
                "INSERT OR REPLACE INTO addresses "
                "(address, domain, result, refresh_at, expires_at, verdict) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                values,
            )
        )

    async def facts(self, domain: str) -> dict[str, Fact]:
        now = self._clock()
        held = self._facts.get(domain, now)
        if held is None:
            held = await self._read_facts(domain, now)
        return unexpired(held, now)

    async def _read_facts(self, domain: str, now: float) -> dict[str, Fact]:
        """From the file, held in the memory tier unless a learn or purge overtook the
        read."""

        def query(connection: sqlite3.Connection) -> list[tuple[str, int, float]]:
            return connection.execute(
                "SELECT fact, value, expires_at FROM domain_facts "
                "WHERE domain = ? AND expires_at > ?",
                (domain, now),
            ).fetchall()

        changes = self._changes
        rows = await self._read(query)
        facts: dict[str, Fact] = {}
        for name, value, expires_at in rows:
            try:
                facts[name] = Fact(bool(int(value)), float(expires_at))
            except ValueError as exc:
                self._bad_records.report(f"{domain} fact {name}", exc)
        if changes == self._changes:
            self._facts.put(domain, facts)
        return facts

    async def learn(self, domain: str, facts: Mapping[str, Fact]) -> None:
        self._changes += 1
        held = self._facts.get(domain, self._clock())
        if held is not None:  # else the next look reads them, with the domain's others
            self._facts.put(domain, {**held, **facts})
        rows = [(domain, name, int(fact.value), fact.expires_at) for name, fact in facts.items()]
        self._write(
            lambda connection: connection.executemany(
                "INSERT OR REPLACE INTO domain_facts (domain, fact, value, expires_at) "
                "VALUES (?, ?, ?, ?)",
                rows,
            )
        )

    async def purge_address(self, address: Address) -> int:
        key = str(address)
        self._changes += 1
        self._tier.pop(key)
        return await self._write_and_wait(
            lambda connection: connection.execute(
                "DELETE FROM addresses WHERE address = ?", (key,)
            ).rowcount
        )

    async def purge_domain(self, domain: str) -> int:
        suffix = f"@{domain}"
        self._changes += 1
        self._tier.drop_keys(lambda key: key.endswith(suffix))
        self._facts.pop(domain)

        def job(connection: sqlite3.Connection) -> int:
            connection.execute("DELETE FROM domain_facts WHERE domain = ?", (domain,))
            count: int = connection.execute(
                "DELETE FROM addresses WHERE domain = ?", (domain,)
            ).rowcount
            return count

        return await self._write_and_wait(job)

    async def purge_all(self) -> int:
        self._changes += 1
        self._tier.clear()
        self._facts.clear()

        def job(connection: sqlite3.Connection) -> int:
            connection.execute("DELETE FROM domain_facts")
            count: int = connection.execute("DELETE FROM addresses").rowcount
            return count

        return await self._write_and_wait(job)

    async def stats(self) -> CacheStats:
        await self.flush()
        now = self._clock()

        def query(connection: sqlite3.Connection) -> tuple[list[tuple[str, int]], int, int]:
            by_result = connection.execute(
                "SELECT result, COUNT(*) FROM addresses WHERE expires_at > ? GROUP BY result",
                (now,),
            ).fetchall()
            awaiting = connection.execute(
                "SELECT COUNT(*) FROM addresses WHERE expires_at > ? AND refresh_at <= ?",
                (now, now),
            ).fetchone()[0]
            domains = connection.execute(
                "SELECT COUNT(DISTINCT domain) FROM domain_facts WHERE expires_at > ?", (now,)
            ).fetchone()[0]
            return by_result, awaiting, domains

        by_result, awaiting, domains = await self._read(query)
        size = sum(
            candidate.stat().st_size
            for candidate in (self.path, Path(f"{self.path}-wal"))
            if candidate.exists()
        )
        return CacheStats(
            backend=self.description,
            addresses=sum(count for _, count in by_result),
            by_result=dict(by_result),
            awaiting_refresh=awaiting,
            domains_with_facts=domains,
            size_bytes=size,
        )

    async def export(self) -> AsyncIterator[CachedVerdict]:
        await self.flush()
        after = ""
        now = self._clock()
        while True:

            def query(
                connection: sqlite3.Connection, after: str = after
            ) -> list[tuple[str, str, float, float]]:
                return connection.execute(
                    "SELECT address, verdict, refresh_at, expires_at FROM addresses "
                    "WHERE address > ? AND expires_at > ? ORDER BY address LIMIT ?",
                    (after, now, EXPORT_CHUNK),
                ).fetchall()

            rows = await self._read(query)
            for address, verdict, refresh_at, expires_at in rows:
                try:
                    record = _row_record(verdict, refresh_at, expires_at)
                except ValueError as exc:
                    self._bad_records.report(address, exc)
                    continue
                yield record
            if len(rows) < EXPORT_CHUNK:
                return
            after = rows[-1][0]

    async def flush(self) -> None:
        await self._write_and_wait(lambda connection: None)

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(CacheError):
            await self.flush()
        self._writer.jobs.put(None)
        await asyncio.to_thread(self._writer.join)
        await self._reader.close()
