"""The SQLite cache's disk fills up under a running verifier: the failure is logged once,
and verifications go on, uncached. Needs root (a tmpfs mount).

A disk turned read-only under a running cbv is not tested: the kernel refuses to remount
read-only while SQLite holds the file open for writing (EBUSY), and root ignores modes."""

from __future__ import annotations

import logging
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from cbv.engine.verifier import Verifier
from cbv.model import Reason
from cbv.testing import MXScript, Reply
from tests.missing import missing
from tests.world import World

MOUNT_SIZE = "1m"
ADDRESSES = 300


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 1 MB tmpfs of the test's own, unmounted whatever happens."""
    mountpoint = tmp_path / "disk"
    mountpoint.mkdir()
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={MOUNT_SIZE}", "tmpfs",
                           str(mountpoint)], capture_output=True)
    if made.returncode != 0:
        missing(f"cannot mount a tmpfs: {made.stderr.decode().strip()}")
    try:
        yield mountpoint
    finally:
        subprocess.run(["umount", "-l", str(mountpoint)], check=True)


def fill(disk: Path) -> None:
    with open(disk / "filler", "wb") as filler:
        try:
            while True:
                filler.write(b"\0" * 65_536)
                filler.flush()
        except OSError:
            pass


async def test_a_full_disk_is_logged_once_and_verifications_go_on(
        world: World, small_disk: Path, caplog: pytest.LogCaptureFixture) -> None:
    await world.mx("store.test", {"127.0.0.2": MXScript(rcpt=[("alice*@store.test",
                                                                Reply(250, "2.1.5 Ok"))])})
    config = world.config(cache={"url": "", "path": str(small_disk / "cache.sqlite3")},
                          callout={"detect_catch_all": False})
    caplog.set_level(logging.WARNING, logger="cbv")
    async with Verifier(config) as verifier:
        assert (await verifier.verify("alice-before@store.test")).reason is Reason.ACCEPTED
        await verifier.cache.flush()
        fill(small_disk)
        for n in range(ADDRESSES):
            verdict = await verifier.verify(f"alice{n}@store.test")
            assert verdict.reason is Reason.ACCEPTED and not verdict.cached
        again = await verifier.verify("alice-before@store.test")
        assert again.reason is Reason.ACCEPTED and again.cached  # what was stored still answers
    failures = [r for r in caplog.records if "cache writes failing" in r.getMessage()]
    assert len(failures) == 1, [r.getMessage() for r in caplog.records]
