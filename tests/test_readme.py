"""The README's Python API snippet runs as pasted: only its config comes from the test,
through $CBV_CONFIG as the snippet reads it, so it meets fake mail servers on loopback."""

from __future__ import annotations

import asyncio
import os
import re
import sys
from pathlib import Path

from cbv.testing import MXScript, Reply
from tests.world import World

README = Path(__file__).resolve().parents[1] / "README.md"


def python_api_snippet() -> str:
    found = re.search(r"<!-- tested: python-api -->\n```python\n(.*?)```", README.read_text(),
                      re.S)
    assert found is not None, "README.md has no marked Python API snippet"
    return found[1]


async def test_the_python_api_snippet_runs_as_pasted(world: World, tmp_path: Path) -> None:
    accepts = MXScript(rcpt=[("alice@example.com", Reply(250, "2.1.5 Ok")),
                             ("a@example.com", Reply(250, "2.1.5 Ok"))])
    farm = await world.mx("example.com", {"127.0.0.2": accepts})
    world.dns.add_mx("example.org", [(10, "mx1.example.com")])  # the same host: one port
    config = tmp_path / "cbv.toml"
    config.write_text(world.toml(farm.port) + '[cache]\nurl = "memory://"\n')
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", python_api_snippet(), cwd=tmp_path,
        env={**os.environ, "CBV_CONFIG": str(config)},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    async with asyncio.timeout(60):
        out, err = await process.communicate()
    assert process.returncode == 0, err.decode()
    lines = out.decode().splitlines()
    assert lines[0].startswith("pass accepted "), lines
    assert lines[1:] == ["a@example.com pass accepted", "b@example.org fail mailbox_unknown"]
