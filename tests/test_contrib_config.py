"""contrib/cbv.toml names every config key, shows its default, and its examples load."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any, get_args, get_origin

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from cbv.config import Config, config_from_dict, load_config
from cbv.policy.rules import DEFAULT_ERROR, DEFAULT_QUARANTINE, DEFAULT_REPLIES

EXAMPLE = Path(__file__).resolve().parent.parent / "contrib" / "cbv.toml"
HEADER = re.compile(r"^(?:#\s*)?\[\[?([^\[\]]+)\]\]?\s*(?:#.*)?$")  # [table], [[array]]
DOMAIN_TABLE = 'policy.domains."example.com"'
DYNAMIC = {("callout", "helo_name")}


def commented_setting(line: str) -> dict[str, Any] | None:
    """`# key = value  # why` as TOML, or None for a line of prose."""
    if not line.startswith("#"):
        return None
    try:
        setting = tomllib.loads(line.lstrip("# "))
    except tomllib.TOMLDecodeError:
        return None
    return setting if len(setting) == 1 else None


def commented_keys() -> dict[str, dict[str, Any]]:
    """{section: {key: value}} for every `# key = value` line."""
    found: dict[str, dict[str, Any]] = {}
    section = ""
    for line in EXAMPLE.read_text().splitlines():
        if header := HEADER.match(line):
            section = header[1].strip()
            found.setdefault(section, {})
        elif (setting := commented_setting(line)) is not None:
            found.setdefault(section, {}).update(setting)
    return found


def table_model(annotation: Any) -> type[BaseModel] | None:
    """The model of a nested table, also when it is optional (`ReplyTexts | None`)."""
    for candidate in (annotation, *get_args(annotation)):
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    return None


def sections(model: type[BaseModel], prefix: str = "") -> dict[str, type[BaseModel]]:
    """Every table of the config, by dotted name; per-domain tables by their example."""
    found = {prefix: model} if prefix else {}
    for name, info in model.model_fields.items():
        path = f"{prefix}.{name}" if prefix else name
        annotation = info.annotation
        if get_origin(annotation) is dict:
            value_model = table_model(get_args(annotation)[1])
            if value_model is not None:
                found.update(sections(value_model, f'{path}."example.com"'))
        elif (nested := table_model(annotation)) is not None:
            found.update(sections(nested, path))
    return found


def default_of(model: type[BaseModel], name: str) -> Any:
    """None for a required key (an egress's name): the example shows any value."""
    info = model.model_fields[name]
    if info.default is not PydanticUndefined:
        return info.default
    if info.default_factory is None:
        return None
    return info.default_factory()  # type: ignore[call-arg]


def test_as_shipped_it_is_the_defaults() -> None:
    assert load_config(EXAMPLE).model_dump() == Config().model_dump()


def test_every_key_is_there_with_its_default() -> None:
    shown = commented_keys()
    for section, model in sections(Config).items():
        assert section in shown, f"[{section}] missing from {EXAMPLE.name}"
        if section.startswith(f"{DOMAIN_TABLE}."):
            continue  # the same tables as [policy]'s, shown there key by key
        for name, info in model.model_fields.items():
            annotation = info.annotation
            if get_origin(annotation) is not dict and table_model(annotation) is not None:
                continue
            if get_origin(annotation) is dict:
                table = f"{section}.{name}"
                assert any(s == table or s.startswith(f"{table}.") for s in shown), table
                continue
            assert name in shown[section], f"{section}.{name} missing from {EXAMPLE.name}"
            value = shown[section][name]
            default = default_of(model, name)
            if section != DOMAIN_TABLE and default is not None and (section, name) not in DYNAMIC:
                assert value == default, f"{section}.{name}: shows {value!r}, default {default!r}"


def test_uncommented_every_example_is_valid() -> None:
    lines = []
    for line in EXAMPLE.read_text().splitlines():
        if HEADER.match(line) or commented_setting(line) is not None:
            line = line.lstrip("# ")
        lines.append(line)
    config = config_from_dict(tomllib.loads("\n".join(lines)), "uncommented example")
    assert config.policy.domains["example.com"].on_fail == "quarantine"
    assert config.callout.map == {"yahoo.net": "yahoo.com"}


def test_reply_examples_are_the_built_in_defaults() -> None:
    assert commented_keys()["policy.replies"] == {
        **DEFAULT_REPLIES["sender"], "quarantine": DEFAULT_QUARANTINE, "error": DEFAULT_ERROR,
    }
