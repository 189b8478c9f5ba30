"""A submitted list, as the HTTP API takes it: a JSON list, NDJSON, or CSV with an
`email` column. Every problem is one line that says where."""

from __future__ import annotations

import json

from cbv.csv_emails import MissingEmailColumn, email_cells

MAX_ADDRESS = 1024  # as the HTTP API's other endpoints: refuse junk early


class InputError(ValueError):
    pass


def _checked(value: object, where: str) -> str:
    if not isinstance(value, str) or not value:
        raise InputError(f"{where}: expected an address as a non-empty string")
    if len(value) > MAX_ADDRESS:
        raise InputError(f"{where}: longer than {MAX_ADDRESS} characters")
    return value.strip() or value  # all blanks: verified, and failed, as written


def _json_list(text: str) -> list[str]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"not JSON: {exc}") from None
    if not isinstance(data, list):
        raise InputError("a JSON body must be a list of addresses")
    return [_checked(value, f"item {n}") for n, value in enumerate(data)]


def _ndjson(text: str) -> list[str]:
    addresses = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InputError(f"line {number}: not JSON: {exc}") from None
        if isinstance(value, dict):
            value = value.get("email")
        addresses.append(_checked(value, f"line {number}"))
    return addresses


def _csv(text: str) -> list[str]:
    try:
        return [_checked(cell, f"row {number}") for number, cell in email_cells(text)]
    except MissingEmailColumn as exc:
        raise InputError(str(exc)) from None


def read_submission(body: bytes, content_type: str) -> list[str]:
    """The addresses of a body; the content type chooses the format."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise InputError("the body is not UTF-8") from None
    kind = content_type.split(";")[0].strip().lower()
    if kind == "application/json":
        addresses = _json_list(text)
    elif kind in ("application/x-ndjson", "application/jsonl", "application/json-seq"):
        addresses = _ndjson(text)
    elif kind in ("text/csv", "application/csv"):
        addresses = _csv(text)
    else:
        raise InputError(f"content type {kind or '(none)'!r}: send application/json (a list), "
                         "application/x-ndjson or text/csv")
    if not addresses:
        raise InputError("no addresses in the body")
    return addresses
