"""The `email` column of a CSV address list, read the same way for `cbv verify --file`,
`cbv job submit` and the jobs API."""

from __future__ import annotations

import contextlib
import csv
import io
from collections.abc import Iterator

SNIFF_CHARS = 4096


class MissingEmailColumn(ValueError):
    def __init__(self, header: list[str]) -> None:
        self.found = ", ".join(header)
        super().__init__(f"CSV needs an 'email' column (found: {self.found})")


def email_cells(text: str) -> Iterator[tuple[int, str]]:
    """(row number, cell) for every row whose `email` cell is not blank; the header is
    row 1. The delimiter (comma, semicolon or tab) is sniffed. Raises MissingEmailColumn."""
    dialect: type[csv.Dialect] = csv.excel
    with contextlib.suppress(csv.Error):
        dialect = csv.Sniffer().sniff(text[:SNIFF_CHARS], delimiters=",;\t")
    reader = csv.reader(io.StringIO(text), dialect)
    header = [cell.strip().lower() for cell in next(reader, [])]
    if "email" not in header:
        raise MissingEmailColumn(header)
    column = header.index("email")
    for number, row in enumerate(reader, start=2):
        if len(row) > column and row[column].strip():
            yield number, row[column]
