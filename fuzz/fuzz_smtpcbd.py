"""atheris target: the smtpcbd line parser never raises."""

from __future__ import annotations

import atheris  # type: ignore[import-not-found]

with atheris.instrument_imports():
    from cbv.protocol.smtpcbd import LineParser

from common import pieces, run


def one_input(data: bytes) -> None:
    parser = LineParser(max_line=100)
    for piece in pieces(data):
        parser.feed(piece)
    parser.end_of_input()


if __name__ == "__main__":
    run(one_input)
