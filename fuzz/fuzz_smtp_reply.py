"""atheris target: the SMTP reply parser (what a hostile MX sends) raises only ReplyError
and yields only 2xx-5xx replies."""

from __future__ import annotations

import atheris  # type: ignore[import-not-found]

with atheris.instrument_imports():
    from cbv.protocol.smtp import ReplyError, ReplyParser

from common import pieces, run


def one_input(data: bytes) -> None:
    parser = ReplyParser(max_line=512, max_reply_bytes=2048)
    try:
        for piece in pieces(data):
            for reply in parser.feed(piece):
                assert 200 <= reply.code <= 559
    except ReplyError:
        pass


if __name__ == "__main__":
    run(one_input)
