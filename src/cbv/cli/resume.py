"""`cbv verify --file F --resume OUT`: what OUT already holds is not verified again, and
new verdicts are appended to it, so a killed run continues where it stopped."""

from __future__ import annotations

import csv
import io
import json
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from cbv.address import AddressError, parse_address
from cbv.text import visible


def address_key(raw: str) -> str:
    """The address as its Verdict names it."""
    try:
        return str(parse_address(raw))
    except AddressError:
        return visible(raw)


def _complete_text(path: Path) -> str:
    """OUT without a last line cut short by a kill; the file is truncated to match."""
    if not path.exists():
        return ""
    data = path.read_bytes()
    complete = data[: data.rfind(b"\n") + 1]
    if len(complete) != len(data):
        with path.open("r+b") as out:
            out.truncate(len(complete))
    return complete.decode("utf-8", errors="replace")


def decided(path: Path, output: str) -> Counter[str]:
    """How many verdicts OUT holds for each address."""
    text = _complete_text(path)
    found: Counter[str] = Counter()
    if output == "csv":
        for row in csv.DictReader(io.StringIO(text)):
            if row.get("address"):
                found[row["address"]] += 1
        return found
    for line in text.splitlines():
        try:
            address = json.loads(line)["address"]
        except (ValueError, KeyError, TypeError):
            continue
        found[address] += 1
    return found


def still_to_verify(items: Sequence[str], done: Counter[str]) -> list[str]:
    left = Counter(done)
    remaining = []
    for raw in items:
        key = address_key(raw)
        if left[key] > 0:
            left[key] -= 1
        else:
            remaining.append(raw)
    return remaining
