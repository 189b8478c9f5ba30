"""Sans-I/O DNS messages for the lookups a callout makes: one MX, A or AAAA question out,
the answer's records back (RFC 1035 section 4).

Only the plain case is decoded: a reply to this very question, not truncated, without
aliases. Anything else raises `NotPlain`, and the caller asks dnspython instead, which
knows TCP, CNAME chains and the rest; this codec exists because decoding an 82-byte
answer with dnspython costs ~116 µs of CPU per MX lookup.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass

import dns.ipv4
import dns.ipv6

A, MX, AAAA, CNAME, SOA = 1, 15, 28, 5, 6
QTYPES = {"A": A, "MX": MX, "AAAA": AAAA}
IN = 1
NOERROR, NXDOMAIN, YXDOMAIN = 0, 3, 6
RECURSION_DESIRED = 0x0100
_REPLY, _TRUNCATED, _OPCODE = 0x8000, 0x0200, 0x7800
_HEADER = struct.Struct("!HHHHHH")
_RR = struct.Struct("!HHIH")
_MAX_NAME = 255
_MAX_LABEL = 63
_MAX_POINTERS = 32
# A host name's label; any other byte (a dot, a space, CR, LF...) is left to dnspython, which
# writes it escaped, so no MX name from a hostile zone reaches a log line or a key raw.
_HOST_LABEL = re.compile(rb"[A-Za-z0-9_-]+")


class NotPlain(Exception):
    """Not a reply this codec decides on: ask the full resolver."""


@dataclass(frozen=True, slots=True)
class Reply:
    rcode: int
    records: tuple[tuple[int, str] | str, ...]  # (preference, exchange) for MX, else text
    ttl: int  # the records' lowest TTL; 0 without records
    soa_ttl: int | None  # min(TTL, minimum) of the authority's SOA, for negative answers


def encode_query(name: str, qtype: int, ident: int) -> bytes:
    """The question `name` (absolute, without the final dot) `qtype` IN, recursion desired."""
    wire = bytearray(_HEADER.pack(ident, RECURSION_DESIRED, 1, 0, 0, 0))
    if not name.isascii() or "\\" in name or len(name) + 2 > _MAX_NAME:
        raise NotPlain(name)
    for label in name.split("."):
        if not 0 < len(label) <= _MAX_LABEL:
            raise NotPlain(name)
        wire.append(len(label))
        wire += label.encode("ascii")
    wire += b"\x00" + struct.pack("!HH", qtype, IN)
    return bytes(wire)


def _name(data: bytes, offset: int) -> tuple[str, int]:
    """The name at `offset` (lower case, no final dot, "" for the root) and the offset past it."""
    labels: list[str] = []
    end = -1
    for _ in range(_MAX_POINTERS):
        length = data[offset]
        if length >= 0xC0:
            if end < 0:
                end = offset + 2
            offset = ((length & 0x3F) << 8) | data[offset + 1]
            continue
        if length > _MAX_LABEL:
            raise NotPlain("bad label")
        if length == 0:
            return ".".join(labels), (end if end >= 0 else offset + 1)
        label = data[offset + 1:offset + 1 + length]
        if not _HOST_LABEL.fullmatch(label):
            raise NotPlain("not a host name")
        labels.append(label.decode("ascii").lower())
        offset += 1 + length
    raise NotPlain("compression loop")


def _rdata(data: bytes, start: int, length: int, rtype: int) -> tuple[int, str] | str:
    if rtype == MX:
        return struct.unpack_from("!H", data, start)[0], _name(data, start + 2)[0]
    if rtype == A and length == 4:
        return dns.ipv4.inet_ntoa(data[start:start + 4])
    if rtype == AAAA and length == 16:
        return dns.ipv6.inet_ntoa(data[start:start + 16])
    raise NotPlain("bad address record")


def decode_reply(data: bytes, ident: int, name: str, qtype: int) -> Reply:
    """The reply to `encode_query(name, qtype, ident)`; NotPlain for anything else."""
    try:
        return _decode(data, ident, name, qtype)
    except (IndexError, struct.error, UnicodeDecodeError) as exc:
        raise NotPlain(f"malformed reply: {exc}") from None


def _decode(data: bytes, ident: int, name: str, qtype: int) -> Reply:
    got, flags, questions, answers, authorities, _ = _HEADER.unpack_from(data)
    if got != ident or not flags & _REPLY or flags & (_TRUNCATED | _OPCODE) or questions != 1:
        raise NotPlain("not the reply to this question")
    asked, offset = _name(data, _HEADER.size)
    if asked != name.lower() or struct.unpack_from("!HH", data, offset) != (qtype, IN):
        raise NotPlain("another question")
    offset += 4
    records: list[tuple[int, str] | str] = []
    ttls: list[int] = []
    for _ in range(answers):
        owner, offset = _name(data, offset)
        rtype, rclass, ttl, length = _RR.unpack_from(data, offset)
        offset += _RR.size
        if rtype == CNAME:
            raise NotPlain("an alias")
        if rtype == qtype and rclass == IN and owner == asked:
            record = _rdata(data, offset, length, rtype)
            if record not in records:
                records.append(record)
            ttls.append(ttl)
        offset += length
    soa_ttl: int | None = None
    for _ in range(authorities):
        _, offset = _name(data, offset)
        rtype, _, ttl, length = _RR.unpack_from(data, offset)
        offset += _RR.size
        if rtype == SOA and soa_ttl is None:
            _, after = _name(data, offset)
            _, after = _name(data, after)
            soa_ttl = min(ttl, struct.unpack_from("!5I", data, after)[4])
        offset += length
    return Reply(flags & 0xF, tuple(records), min(ttls, default=0), soa_ttl)
