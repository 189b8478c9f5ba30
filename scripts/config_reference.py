"""Render docs/configuration.md from the pydantic config models, so the reference cannot
drift from the code. `python scripts/config_reference.py > docs/configuration.md`."""

from __future__ import annotations

import json
import re
import sys
from typing import Any, get_args, get_origin

from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from cbv.config import Config

INTRO = """# Configuration reference

cbv reads TOML from `--config FILE`, else `$CBV_CONFIG`, else `/etc/cbv/cbv.toml` if it
exists, else uses the built-in defaults below. Unknown keys are errors that name the key;
every error is one line. `contrib/cbv.toml` is a commented example.

Domains written as keys (`callout.map` keys and values, `callout.routes`,
`limits.domain_overrides`, `policy.domains`) are read as addresses' domains are: any case,
a final dot or none, internationalised names in Unicode or A-labels (`"Bücher.example"` is
`xn--bcher-kva.example`). Two keys naming the same domain are an error.

This page is generated from the code by `scripts/config_reference.py`; a test fails when it
is out of date.
"""

DYNAMIC_DEFAULTS = {"callout.helo_name": "the machine's fully qualified name"}


def _default(path: str, info: FieldInfo) -> str:
    if path in DYNAMIC_DEFAULTS:
        return DYNAMIC_DEFAULTS[path]
    if info.default is not PydanticUndefined:
        value: Any = info.default
    elif info.default_factory is not None:
        value = info.default_factory()  # type: ignore[call-arg]
    else:
        return "(required)"
    if isinstance(value, BaseModel):
        return "(table)"
    return f"`{json.dumps(value)}`"


def _type_name(info: FieldInfo) -> str:
    text = str(info.annotation).replace("typing.", "")
    for noise in ("<class '", "'>"):
        text = text.replace(noise, "")
    text = text.replace("Literal", "one of ").replace("NoneType", "none")
    return re.sub(r"cbv\.[\w.]+\.", "", text).replace("|", "or")


def _table_of(info: FieldInfo) -> type[BaseModel] | None:
    """The model of an array of tables ([[callout.egress]]), else None."""
    if get_origin(info.annotation) is list:
        (item,) = get_args(info.annotation)
        if isinstance(item, type) and issubclass(item, BaseModel):
            return item
    return None


def _section_rows(model: type[BaseModel], prefix: str) -> list[tuple[str, str, list[str]]]:
    """(section title, its model's docstring, rows) for `model` and the tables inside it."""
    rows: list[str] = []
    nested: list[tuple[str, str, list[str]]] = []
    for name, info in model.model_fields.items():
        path = f"{prefix}.{name}" if prefix else name
        annotation = info.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            nested.extend(_section_rows(annotation, path))
            continue
        table = _table_of(info)
        if table is not None:
            (title, doc, table_rows), *deeper = _section_rows(table, path)
            nested.extend([(f"[{title}]", doc, table_rows), *deeper])
        description = (info.description or "").replace("|", "\\|").replace("<", "&lt;")
        rows.append(f"| `{name}` | {_type_name(info)} | {_default(path, info)} | {description} |")
    doc = " ".join((model.__doc__ or "").split())
    sections = [(f"[{prefix}]", doc, rows)] if rows else []
    return sections + nested


def render() -> str:
    parts = [INTRO]
    for title, model_doc, rows in _section_rows(Config, ""):
        parts.append(f"\n## {title}\n")
        if model_doc:
            parts.append(model_doc.replace("<", "&lt;") + "\n")
        parts.append("\n| key | type | default | meaning |\n|---|---|---|---|")
        parts.extend(rows)
    return "\n".join(parts) + "\n"


def undocumented() -> list[str]:
    """Keys without a description: each must say what it does."""
    missing: list[str] = []

    def walk(model: type[BaseModel], prefix: str) -> None:
        for name, info in model.model_fields.items():
            path = f"{prefix}.{name}" if prefix else name
            annotation = info.annotation
            table = _table_of(info)
            if isinstance(annotation, type) and issubclass(annotation, BaseModel):
                walk(annotation, path)
                continue
            if table is not None:
                walk(table, path)
            if not info.description:
                missing.append(path)

    walk(Config, "")
    return missing


if __name__ == "__main__":
    sys.stdout.write(render())
