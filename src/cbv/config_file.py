"""Which configuration file applies, and its TOML, before any validation.

Apart from the config models (cbv.config) because those import pydantic: `cbv verify` reads
the file first, and when it sets nothing (there is none, or it holds only comments) a
syntax-only verdict needs no validation, so it answers without importing pydantic.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any

DEFAULT_CONFIG_PATH = Path("/etc/cbv/cbv.toml")


class ConfigError(Exception):
    """A configuration problem, worded for the one-line message a user sees."""


def config_source(path: str | Path | None = None) -> Path | None:
    """The file `load_config(path)` reads: --config, else $CBV_CONFIG, else
    /etc/cbv/cbv.toml if present; None for the built-in defaults."""
    chosen = path or os.environ.get("CBV_CONFIG") or None
    if chosen is not None:
        return Path(chosen)
    return DEFAULT_CONFIG_PATH if DEFAULT_CONFIG_PATH.exists() else None


def read_config_file(chosen: Path) -> dict[str, Any]:
    """The file's TOML, not yet validated; a ConfigError naming the file if it cannot be
    read or is not TOML."""
    source = str(chosen)
    try:
        return tomllib.loads(chosen.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{source}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{source}: cannot read: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: invalid TOML: {exc}") from None
