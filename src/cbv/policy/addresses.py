"""Addresses as the policy compares them: lower-cased, the domain in A-labels."""

from __future__ import annotations

from functools import lru_cache

from cbv.address import AddressError, parse_address


@lru_cache(maxsize=8192)
def normalised(address: str) -> tuple[str, str]:
    """(address, domain), as config entries are normalised; senders and recipients repeat,
    so the parse is remembered."""
    try:
        parsed = parse_address(address)
    except AddressError:
        lowered = address.lower()
        return lowered, lowered.rpartition("@")[2]
    return f"{parsed.local.lower()}@{parsed.domain}", parsed.domain
