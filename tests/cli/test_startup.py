"""What `cbv` imports before it does anything: structural, not timed (the times are in
docs/benchmarks.md, from `python -m bench startup`)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

HEAVY = ("fastapi", "uvicorn", "starlette", "prometheus_client", "redis", "dns",
         "cbv.servers", "cbv.engine.verifier", "cbv.cache.opening")


def imported_by(code: str) -> set[str]:
    """The modules a fresh interpreter holds after running `code`."""
    probe = f"{code}\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))"
    found = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                           check=True, timeout=60)
    return set(json.loads(found.stdout.splitlines()[-1]))


def heavy(modules: set[str]) -> list[str]:
    return sorted(m for m in modules if any(m == h or m.startswith(h + ".") for h in HEAVY))


def test_the_cli_entry_point_imports_no_daemon_http_or_engine() -> None:
    modules = imported_by("import cbv.cli.main")
    assert heavy(modules) == []
    assert "pydantic" not in modules, "not even the config models"


@pytest.mark.parametrize("arguments", [["verify", "--help"], ["verify", "not an address"]])
def test_verify_help_and_a_syntax_only_verdict_import_no_engine(arguments: list[str]) -> None:
    code = ("import contextlib, io\nfrom cbv.cli.main import cli\n"
            "with contextlib.suppress(SystemExit), contextlib.redirect_stdout(io.StringIO()):\n"
            f"    cli.main({json.dumps(arguments)})")
    assert heavy(imported_by(code)) == []
