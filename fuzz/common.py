"""Shared by the atheris targets: feed one input to a codec in the pieces the input's first
bytes choose, so the split points are fuzzed along with the content."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator

import atheris  # type: ignore[import-not-found]


def pieces(data: bytes) -> Iterator[bytes]:
    """The first byte is a piece length (1..256); the rest is cut into pieces of it."""
    if not data:
        return
    size = data[0] + 1
    body = data[1:]
    for start in range(0, len(body), size):
        yield body[start:start + size]


def run(one_input: Callable[[bytes], None]) -> None:
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()
