"""Reading addresses from a file: one per line, or CSV with an `email` column."""

from __future__ import annotations

from cbv.csv_emails import MissingEmailColumn, email_cells


class InputError(ValueError):
    """The address file cannot be used; the message names the problem."""


def decode_text(data: bytes, source: str) -> str:
    """UTF-8 text, or an InputError naming `source` and saying it is not text."""
    if b"\0" in data:
        raise InputError(f"{source}: not a text file (it holds NUL bytes); "
                         "give addresses one per line, or CSV")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError(f"{source}: not a text file (not UTF-8: byte 0x{data[exc.start]:02x} "
                         f"at offset {exc.start}); give addresses one per line, or CSV") from None


def read_addresses(text: str, source: str) -> list[str]:
    lines = text.splitlines()
    first = next((line for line in lines if line.strip()), "")
    if "," in first or ";" in first or "\t" in first:
        return _read_csv(text, source)
    return [
        line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")
    ]


def _read_csv(text: str, source: str) -> list[str]:
    try:
        return [cell.strip() for _, cell in email_cells(text)]
    except MissingEmailColumn as exc:
        raise InputError(f"{source}: CSV input needs an 'email' column (found: {exc.found})"
                         ) from None
