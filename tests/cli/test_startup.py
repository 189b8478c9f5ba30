"""What `cbv` imports before it does anything: structural, not timed (the times are in
docs/benchmarks.md, from `python -m bench startup`)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

HEAVY = ("fastapi", "uvicorn", "starlette", "prometheus_client", "redis", "dns",
         "cbv.servers", "cbv.engine.verifier", "cbv.cache.opening", "asyncio")
# What a syntax-only verdict does without when the configuration sets nothing: the config
# models and the Verdict (pydantic), the engine, and idna (ASCII input needs none).
NOT_FOR_SYNTAX_ONLY = (*HEAVY, "pydantic", "pydantic_core", "cbv.config", "cbv.model",
                       "cbv.engine", "idna")


def imported_by(code: str, config: Path | None = None) -> set[str]:
    """The modules a fresh interpreter holds after running `code` (with `config` as the
    configuration file, else the built-in defaults)."""
    probe = f"{code}\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))"
    env = {**os.environ, "CBV_CONFIG": str(config or "")}
    for colour in ("FORCE_COLOR", "TTY_COMPATIBLE"):  # the output is not a terminal
        env.pop(colour, None)
    found = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                           check=True, timeout=60, env=env)
    return set(json.loads(found.stdout.splitlines()[-1]))


def among(modules: set[str], names: tuple[str, ...]) -> list[str]:
    return sorted(m for m in modules if any(m == n or m.startswith(n + ".") for n in names))


def running(arguments: list[str]) -> str:
    return ("import contextlib, io\nfrom cbv.cli.main import cli\n"
            "with contextlib.suppress(SystemExit), contextlib.redirect_stdout(io.StringIO()):\n"
            f"    cli.main({json.dumps(arguments)})")


def test_the_cli_entry_point_imports_no_daemon_http_or_engine() -> None:
    modules = imported_by("import cbv.cli.main")
    assert among(modules, HEAVY) == []
    assert "pydantic" not in modules, "not even the config models"


@pytest.mark.parametrize("arguments", [["verify", "--help"], ["verify", "not an address"]])
def test_verify_help_and_a_syntax_only_verdict_import_no_engine(arguments: list[str]) -> None:
    assert among(imported_by(running(arguments)), HEAVY) == []


@pytest.mark.parametrize("config_text", [None, "", "# nothing set yet\n\n"])
@pytest.mark.parametrize("output", [[], ["--json"], ["--output", "csv"]])
def test_a_syntax_only_verdict_under_the_defaults_imports_no_pydantic(
        tmp_path: Path, config_text: str | None, output: list[str]) -> None:
    config = None
    if config_text is not None:
        config = tmp_path / "cbv.toml"
        config.write_text(config_text)
    modules = imported_by(running(["verify", *output, "not an address", "two@@at.test"]),
                          config)
    assert among(modules, NOT_FOR_SYNTAX_ONLY) == []
    assert "rich" not in modules, "text into a pipe is printed without rich"


def test_a_config_file_that_sets_something_is_validated_even_for_a_syntax_only_verdict(
        tmp_path: Path) -> None:
    config = tmp_path / "cbv.toml"
    config.write_text('[callout]\nhelo_name = "verifier.cbv.test"\n')
    modules = imported_by(running(["verify", "not an address"]), config)
    assert "cbv.config" in modules
    assert among(modules, HEAVY) == []
