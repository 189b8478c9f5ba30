"""DNS message codec for FakeDNS: dnslib in, dnslib out."""

from typing import Any

from dnslib import EDNS0, QTYPE, DNSError, DNSRecord

from cbv.testing.dns_zone import Resolution

EDNS_PAYLOAD = 1232
PLAIN_UDP_LIMIT = 512
TCP_LIMIT = 65535


def decode_query(packet: bytes) -> Any | None:
    """Garbage is dropped rather than answered, like a busy resolver would."""
    try:
        query = DNSRecord.parse(packet)
    except (DNSError, ValueError, IndexError):
        return None
    if query.header.qr or not query.questions:
        return None
    return query


def _udp_limit(query: Any) -> int:
    """A client without EDNS gets classic 512-byte answers, so truncation is exercised."""
    for rr in query.ar:
        if rr.rtype == QTYPE.OPT:
            return max(PLAIN_UDP_LIMIT, int(rr.rclass))
    return PLAIN_UDP_LIMIT


def encode_response(query: Any, resolution: Resolution, tcp: bool) -> bytes:
    """Answers as a recursive resolver (RA set, AA clear), truncating oversize UDP."""
    reply = query.reply(ra=1, aa=0)
    reply.header.rcode = resolution.rcode
    reply.add_answer(*resolution.answer)
    reply.add_auth(*resolution.authority)
    edns = any(rr.rtype == QTYPE.OPT for rr in query.ar)
    if edns:
        reply.add_ar(EDNS0(udp_len=EDNS_PAYLOAD))
    packet: bytes = reply.pack()
    if len(packet) <= (TCP_LIMIT if tcp else _udp_limit(query)):
        return packet
    truncated = query.reply(ra=1, aa=0)
    truncated.header.rcode = resolution.rcode
    truncated.header.tc = 1
    if edns:
        truncated.add_ar(EDNS0(udp_len=EDNS_PAYLOAD))
    result: bytes = truncated.pack()
    return result
