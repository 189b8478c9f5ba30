"""The status page in headless Chromium, against a running daemon fed by the fake MX: the
charts and the recent-decisions table render with real data, through the token given in
the URL's fragment. A screenshot is kept under artifacts/.

Without Chromium the test skips with one line; under CI=true it fails instead.
"""

from __future__ import annotations

import asyncio
import re
import shutil
from pathlib import Path

from cbv.testing import MXFarm
from tests.missing import missing
from tests.servers.clients import PolicyClient, running, sender_domains, server_config
from tests.servers.milter_client import MilterClient
from tests.world import World

TOKEN = "status-page-token-0123"
DRY_RUN = "dry.test"  # a recipient domain whose table sets dry_run
ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu",
                  "--disable-background-networking"]
WAIT = 60.0


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        missing("chromium not installed (scripts/install-test-deps installs it)")
    return found


async def browse(browser: str, profile: Path, url: str, *extra: str) -> str:
    """What Chromium prints: the page's DOM with --dump-dom; nothing with --screenshot."""
    process = await asyncio.create_subprocess_exec(
        browser, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--no-first-run",
        "--virtual-time-budget=4000", *extra, url,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        async with asyncio.timeout(WAIT):
            out, err = await process.communicate()
    except TimeoutError:
        process.kill()
        await process.wait()
        raise
    assert process.returncode == 0, err.decode(errors="replace")[-2000:]
    return out.decode()


def rows(dom: str, table: str) -> list[str]:
    section = dom.split(f'id="{table}"', 1)[1].split("</section>", 1)[0]
    body = section.split("<tbody>", 1)[1].split("</tbody>", 1)[0]
    return re.findall(r"<tr>(.*?)</tr>", body, re.S)


async def feed(daemon_addresses: dict[str, str]) -> None:
    """Decisions of every kind, through the policy and milter listeners and the API."""
    policy = await PolicyClient.connect(daemon_addresses["policy"])
    for sender in ("alice@pass.test", "nobody@fail.test", "someone@grey.test",
                   "nobody@fail.test", "x@policy.test"):
        await policy.ask(sender)
    assert (await policy.ask("nobody@fail.test", f"bob@{DRY_RUN}")).startswith("WARN ")
    await policy.close()
    milter = await MilterClient.negotiated(daemon_addresses["milter"])
    await milter.mail("second@fail.test")
    await milter.rcpt("bob@example.test")  # refused: the fail.test budget is spent
    await milter.close()


async def test_status_page_renders_live_data(world: World, tmp_path: Path) -> None:
    browser = chromium()
    farm: MXFarm = await sender_domains(world)
    server = {"policy": "127.0.0.1:0", "milter": "127.0.0.1:0", "http": "127.0.0.1:0"}
    config = server_config(world, farm, server=server, http={"token": TOKEN},
                           policy={"local_networks": [],
                                   "domains": {DRY_RUN: {"dry_run": True}}},
                           limits={"domain_burst": 1, "domain_per_minute": 1.0, "max_wait": 0.0})
    async with running(config) as daemon:
        addresses = daemon.addresses()
        await feed(addresses)
        url = f"http://{addresses['http']}/#token={TOKEN}"
        dom = await browse(browser, tmp_path / "profile", url, "--dump-dom")
        assert re.search(r'<body data-updates="[1-9]', dom), dom[:3000]
        assert "updated " in dom and 'class="error"' not in dom

        recent = rows(dom, "recent")
        assert len(recent) == 7, recent
        assert "second@fail.test" in recent[0] and "milter" in recent[0]
        assert "rate_limited" in recent[0]
        assert any("nobody@fail.test" in row and "reject" in row for row in recent)
        assert any("someone@grey.test" in row and "defer" in row for row in recent)
        assert "accept (dry run: would reject)" in recent[1], "shown as what happened"

        bars = re.findall(r'<rect class="bar"[^>]*data-result="(\w+)"', dom)
        assert {"pass", "fail", "transient", "unknown"} <= set(bars), bars
        assert re.search(r'<path class="line avg" d="M[\d.]+,[\d.]+', dom), "latency drawn"
        assert re.search(r'<path class="line ratio" d="M', dom), "cache ratio drawn"
        assert re.search(r'id="cache-total">\d+\.\d%<', dom)
        pressure = rows(dom, "pressure")
        assert "fail.test" in pressure[0]
        (egress,) = rows(dom, "egresses")
        assert "direct" in egress and "active" in egress
        cooling = rows(dom, "cooling")  # x@policy.test: "Client host rejected"
        assert len(cooling) == 1 and "127.0.0.5" in cooling[0] and "5.7.1" in cooling[0]

        ARTIFACTS.mkdir(exist_ok=True)
        shot = ARTIFACTS / "status-page.png"
        shot.unlink(missing_ok=True)
        await browse(browser, tmp_path / "profile", url, f"--screenshot={shot}",
                     "--window-size=1280,1000", "--hide-scrollbars")
        assert shot.stat().st_size > 10_000
        print(f"status page screenshot: {shot}")
