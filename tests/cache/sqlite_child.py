"""Run as a child process that writes to a SQLite cache until it is killed with SIGKILL.

`python -m tests.cache.sqlite_child PATH COUNT`: stores COUNT verdicts, flushes, prints
"flushed"; stores and flushes a first batch of extras, prints "writing", then keeps storing
more without waiting, so the kill lands in the middle of write batches.
"""

from __future__ import annotations

import asyncio
import itertools
import sys
import time
from pathlib import Path

from cbv.cache.sqlite import SQLiteBackend
from tests.cache.helpers import record

EXTRA_BATCH = 1_000


async def main(path: Path, count: int) -> None:
    backend = SQLiteBackend(path)
    now = time.time()
    for n in range(count):
        await backend.put(record(f"kept{n}@durable.test", now=now))
    await backend.flush()
    print("flushed", flush=True)
    for n in itertools.count():
        await backend.put(record(f"extra{n}@durable.test", now=now))
        if n == EXTRA_BATCH:
            await backend.flush()
            print("writing", flush=True)
        if n % 100 == 0:
            await asyncio.sleep(0)


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1]), int(sys.argv[2])))
