"""The embedded job queue: one SQLite file (WAL) owned by one `cbv serve`.

Every call runs on one connection in a worker thread, one transaction each, so a kill -9
loses nothing committed. Items claimed by the previous process are claimable again at
once when the file is opened: only one process uses it.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

from cbv.jobs.model import FINISHED, Final, JobSpec, JobState, JobStatus, Later, WorkItem
from cbv.jobs.queue import Claimed, QueueError, Settlement
from cbv.model import Result

T = TypeVar("T")

SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY, spec TEXT NOT NULL, state TEXT NOT NULL, total INTEGER NOT NULL,
    done INTEGER NOT NULL DEFAULT 0, waiting INTEGER NOT NULL DEFAULT 0,
    created_at REAL NOT NULL, finished_at REAL, expires_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS items (
    id INTEGER PRIMARY KEY, job TEXT NOT NULL, payload TEXT NOT NULL, ready_at REAL NOT NULL,
    claimed_at REAL
);
CREATE INDEX IF NOT EXISTS items_ready ON items (ready_at);
CREATE TABLE IF NOT EXISTS results (
    job TEXT NOT NULL, idx INTEGER NOT NULL, result TEXT NOT NULL, line TEXT NOT NULL,
    PRIMARY KEY (job, idx)
) WITHOUT ROWID;
"""


class SQLiteJobQueue:
    def __init__(self, path: Path, *, keep: float, lease: float) -> None:
        self._path = path
        self._keep = keep
        self._lease = lease
        self._lock = threading.Lock()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(SCHEMA)
            self._db.execute("UPDATE items SET claimed_at = NULL")
        except (OSError, sqlite3.Error) as exc:
            raise QueueError(f"job queue {path}: {exc}") from None

    def description(self) -> str:
        return f"sqlite://{self._path}"

    async def _run(self, work: Callable[[sqlite3.Connection], T]) -> T:
        def locked() -> T:
            with self._lock:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    value = work(self._db)
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise
                self._db.execute("COMMIT")
                return value

        try:
            return await asyncio.to_thread(locked)
        except sqlite3.Error as exc:
            raise QueueError(f"job queue {self._path}: {exc}") from None

    async def submit(self, spec: JobSpec, items: Sequence[WorkItem]) -> None:
        expires = spec.deadline + self._keep

        def work(db: sqlite3.Connection) -> None:
            db.execute("INSERT INTO jobs (id, spec, state, total, created_at, expires_at) "
                       "VALUES (?, ?, ?, ?, ?, ?)", (spec.id, spec.model_dump_json(),
                                                     JobState.QUEUED, spec.total,
                                                     spec.created_at, expires))
            db.executemany("INSERT INTO items (job, payload, ready_at) VALUES (?, ?, ?)",
                           [(spec.id, item.to_json(), spec.created_at) for item in items])

        await self._run(work)

    async def claim(self, count: int, now: float) -> list[Claimed]:
        def work(db: sqlite3.Connection) -> list[Claimed]:
            rows = db.execute(
                "SELECT id, payload FROM items WHERE ready_at <= ? AND "
                "(claimed_at IS NULL OR claimed_at < ?) ORDER BY ready_at LIMIT ?",
                (now, now - self._lease, count)).fetchall()
            claimed = [Claimed(str(row_id), WorkItem.from_json(payload))
                       for row_id, payload in rows]
            db.executemany("UPDATE items SET claimed_at = ? WHERE id = ?",
                           [(now, int(c.token)) for c in claimed])
            for c in claimed:
                if c.item.budget:
                    db.execute("UPDATE jobs SET waiting = waiting - ? WHERE id = ?",
                               (len(c.item.entries), c.item.job))
            db.executemany("UPDATE items SET payload = ? WHERE id = ?",
                           [(WorkItem(c.item.job, c.item.entries, False, c.item.nonce).to_json(),
                             int(c.token)) for c in claimed if c.item.budget])
            return claimed

        return await self._run(work)

    async def renew(self, claimed: Sequence[Claimed], now: float) -> None:
        def work(db: sqlite3.Connection) -> None:
            db.executemany("UPDATE items SET claimed_at = ? WHERE id = ?",
                           [(now, int(c.token)) for c in claimed])

        await self._run(work)

    async def settle(self, claimed: Claimed, finals: Sequence[Final], later: Sequence[Later],
                     now: float) -> Settlement:
        job = claimed.item.job

        def work(db: sqlite3.Connection) -> Settlement:
            if not db.execute("DELETE FROM items WHERE id = ?", (int(claimed.token),)).rowcount:
                return Settlement(applied=False, finished=False)
            row = db.execute("SELECT state, total FROM jobs WHERE id = ?", (job,)).fetchone()
            if row is None or row[0] in FINISHED:
                return Settlement(applied=True, finished=False)
            state, total = row
            added = db.executemany("INSERT OR IGNORE INTO results (job, idx, result, line) "
                                   "VALUES (?, ?, ?, ?)",
                                   [(job, f.index, f.result.value, f.line) for f in finals])
            done = db.execute("UPDATE jobs SET done = done + ? WHERE id = ? RETURNING done",
                              (max(added.rowcount, 0), job)).fetchone()[0]
            for entry in later:
                db.execute("INSERT INTO items (job, payload, ready_at) VALUES (?, ?, ?)",
                           (job, entry.item.to_json(), entry.ready_at))
                if entry.item.budget:
                    db.execute("UPDATE jobs SET waiting = waiting + ? WHERE id = ?",
                               (len(entry.item.entries), job))
            if done >= total:
                db.execute("UPDATE jobs SET state = ?, finished_at = ?, expires_at = ? "
                           "WHERE id = ?", (JobState.DONE, now, now + self._keep, job))
                return Settlement(applied=True, finished=True)
            if state == JobState.QUEUED:
                db.execute("UPDATE jobs SET state = ? WHERE id = ?", (JobState.RUNNING, job))
            return Settlement(applied=True, finished=False)

        return await self._run(work)

    async def spec(self, job_id: str) -> tuple[JobSpec, JobState] | None:
        def work(db: sqlite3.Connection) -> tuple[str, str] | None:
            row = db.execute("SELECT spec, state FROM jobs WHERE id = ?", (job_id,)).fetchone()
            return None if row is None else (row[0], row[1])

        found = await self._run(work)
        if found is None:
            return None
        return JobSpec.model_validate_json(found[0]), JobState(found[1])

    @staticmethod
    def _status(db: sqlite3.Connection, row: tuple[str, str, int, float | None],
                now: float) -> JobStatus:
        spec_json, state, waiting, finished_at = row
        spec = JobSpec.model_validate_json(spec_json)
        counts = {Result(result): n for result, n in db.execute(
            "SELECT result, count(*) FROM results WHERE job = ? GROUP BY result", (spec.id,))}
        return JobStatus.build(spec, JobState(state), counts, waiting, finished_at, now)

    async def status(self, job_id: str, now: float) -> JobStatus | None:
        def work(db: sqlite3.Connection) -> JobStatus | None:
            row = db.execute("SELECT spec, state, waiting, finished_at FROM jobs WHERE id = ?",
                             (job_id,)).fetchone()
            return None if row is None else self._status(db, row, now)

        return await self._run(work)

    async def results(self, job_id: str, start: int, count: int) -> list[tuple[int, str]]:
        def work(db: sqlite3.Connection) -> list[tuple[int, str]]:
            return [(int(i), str(line)) for i, line in db.execute(
                "SELECT idx, line FROM results WHERE job = ? AND idx >= ? AND idx < ? "
                "ORDER BY idx", (job_id, start, start + count))]

        return await self._run(work)

    async def cancel(self, job_id: str, now: float) -> JobState | None:
        def work(db: sqlite3.Connection) -> JobState | None:
            row = db.execute("SELECT state FROM jobs WHERE id = ?", (job_id,)).fetchone()
            if row is None:
                return None
            if row[0] in FINISHED:
                return JobState(row[0])
            db.execute("UPDATE jobs SET state = ?, finished_at = ?, expires_at = ? WHERE id = ?",
                       (JobState.CANCELLED, now, now + self._keep, job_id))
            db.execute("DELETE FROM items WHERE job = ? AND claimed_at IS NULL", (job_id,))
            return JobState.CANCELLED

        return await self._run(work)

    async def recent(self, now: float, limit: int) -> list[JobStatus]:
        def work(db: sqlite3.Connection) -> list[JobStatus]:
            rows = db.execute("SELECT spec, state, waiting, finished_at FROM jobs "
                              "ORDER BY created_at DESC LIMIT ?", (limit,)).fetchall()
            return [self._status(db, row, now) for row in rows]

        return await self._run(work)

    async def expire(self, now: float) -> int:
        def work(db: sqlite3.Connection) -> int:
            gone = [row[0] for row in db.execute(
                "SELECT id FROM jobs WHERE expires_at <= ?", (now,))]
            for job_id in gone:
                for table in ("results", "items"):
                    db.execute(f"DELETE FROM {table} WHERE job = ?", (job_id,))  # noqa: S608
                db.execute("DELETE FROM jobs WHERE id = ?", (job_id,))
            return len(gone)

        return await self._run(work)

    async def aclose(self) -> None:
        def close() -> None:
            with self._lock:
                self._db.close()

        await asyncio.to_thread(close)
