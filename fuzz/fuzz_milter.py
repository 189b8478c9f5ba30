"""atheris target: the milter command and response decoders raise only MilterProtocolError."""

from __future__ import annotations

import contextlib

import atheris  # type: ignore[import-not-found]

with atheris.instrument_imports():
    from cbv.protocol.milter import CommandDecoder, ResponseDecoder
    from cbv.protocol.milter_wire import MilterProtocolError

from common import pieces, run


def one_input(data: bytes) -> None:
    for decoder in (CommandDecoder(max_packet=512), ResponseDecoder(max_packet=512)):
        with contextlib.suppress(MilterProtocolError):
            for piece in pieces(data):
                decoder.feed(piece)


if __name__ == "__main__":
    run(one_input)
