"""atheris target: the Postfix policy request parser never raises and stays bounded."""

from __future__ import annotations

import atheris  # type: ignore[import-not-found]

with atheris.instrument_imports():
    from cbv.protocol.postfix_policy import RequestParser

from common import pieces, run

LIMIT = 100 + 1000 + 65_536  # max_line + max_request + the largest piece fed


def one_input(data: bytes) -> None:
    parser = RequestParser(max_line=100, max_request=1000)
    for piece in pieces(data):
        parser.feed(piece)
        assert parser.pending <= LIMIT


if __name__ == "__main__":
    run(one_input)
