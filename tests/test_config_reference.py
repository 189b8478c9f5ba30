"""docs/configuration.md is generated from the config models and must stay current."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parent.parent


def reference_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "config_reference", ROOT / "scripts" / "config_reference.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_every_key_says_what_it_does() -> None:
    assert reference_module().undocumented() == []


def test_docs_configuration_is_current() -> None:
    expected = reference_module().render()
    current = (ROOT / "docs" / "configuration.md").read_text()
    assert current == expected, (
        "docs/configuration.md is stale: run "
        "`.venv/bin/python scripts/config_reference.py > docs/configuration.md`")
