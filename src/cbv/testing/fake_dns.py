"""A loopback DNS server posing as a recursive resolver for a zone built in Python."""

import ipaddress
import threading
from collections.abc import Iterable
from types import TracebackType
from typing import Any, Self

from dnslib import AAAA, CNAME, MX, QTYPE, RR, TXT, A

from cbv.testing.dns_transport import DNSTransport
from cbv.testing.dns_wire import decode_query, encode_response
from cbv.testing.dns_zone import Behaviour, Record, Zone, normalize

TXT_CHUNK = 255


class FakeDNS:
    """Lets tests script DNS answers and failures without ever touching a real resolver."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self._zone = Zone()
        self._transport = DNSTransport(self._handle, host, port)
        self._log_lock = threading.Lock()
        self._queries: list[tuple[str, str]] = []

    @property
    def host(self) -> str:
        return self._transport.host

    @property
    def port(self) -> int:
        return self._transport.port

    @property
    def nameserver(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    def start(self) -> None:
        self._transport.start()

    def stop(self) -> None:
        self._transport.stop()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def add_mx(self, name: str, exchanges: Iterable[tuple[int, str]], ttl: int = 300) -> None:
        for preference, exchange in exchanges:
            self._add(name, QTYPE.MX, ttl, MX(_fqdn(exchange), preference))

    def add_null_mx(self, name: str, ttl: int = 300) -> None:
        """RFC 7505: the domain states it accepts no mail."""
        self._add(name, QTYPE.MX, ttl, MX(".", 0))

    def add_a(self, name: str, *ips: str, ttl: int = 300) -> None:
        for ip in ips:
            self._add(name, QTYPE.A, ttl, A(str(ipaddress.IPv4Address(ip))))

    def add_aaaa(self, name: str, *ips: str, ttl: int = 300) -> None:
        for ip in ips:
            self._add(name, QTYPE.AAAA, ttl, AAAA(list(ipaddress.IPv6Address(ip).packed)))

    def add_cname(self, name: str, target: str, ttl: int = 300) -> None:
        self._add(name, QTYPE.CNAME, ttl, CNAME(_fqdn(target)))

    def add_txt(self, name: str, text: str, ttl: int = 300) -> None:
        data = text.encode()
        chunks = [data[i : i + TXT_CHUNK] for i in range(0, len(data), TXT_CHUNK)] or [b""]
        self._add(name, QTYPE.TXT, ttl, TXT(chunks))

    def add_record(self, name: str, rtype: str, rdata_text: str, ttl: int = 300) -> None:
        """Any type dnslib can read in zone-file syntax, e.g. ("_25._tcp.mx.test", "TLSA", ...)."""
        for rr in RR.fromZone(f"{_fqdn(name)} {ttl} IN {rtype.upper()} {rdata_text}"):
            self._add(name, rr.rtype, ttl, rr.rdata)

    def set_nxdomain(self, name: str) -> None:
        """Forced failures override the name's records until remove() or clear()."""
        self._zone.set_behaviour(name, Behaviour.NXDOMAIN)

    def set_servfail(self, name: str) -> None:
        self._zone.set_behaviour(name, Behaviour.SERVFAIL)

    def set_timeout(self, name: str) -> None:
        self._zone.set_behaviour(name, Behaviour.TIMEOUT)

    def set_delay(self, name: str, seconds: float) -> None:
        """Slows answers to questions about this very name, failures included."""
        self._zone.set_delay(name, seconds)

    def remove(self, name: str) -> None:
        self._zone.remove(name)

    def clear(self) -> None:
        """Empties the zone but keeps the query log, which tests may still assert on."""
        self._zone.clear()

    @property
    def queries(self) -> list[tuple[str, str]]:
        """(name, type) as received, lower-cased and without the trailing dot."""
        with self._log_lock:
            return list(self._queries)

    def query_count(self, name: str | None = None, rtype: str | None = None) -> int:
        key = None if name is None else normalize(name)
        kind = None if rtype is None else rtype.upper()
        return sum(
            1
            for qname, qtype in self.queries
            if (key is None or qname == key) and (kind is None or qtype == kind)
        )

    def _add(self, name: str, rtype: int, ttl: int, rdata: Any) -> None:
        self._zone.add(name, Record(rtype, ttl, rdata))

    def _handle(self, packet: bytes, tcp: bool) -> tuple[bytes, float] | None:
        query = decode_query(packet)
        if query is None:
            return None
        qname, qtype = query.q.qname, int(query.q.qtype)
        with self._log_lock:
            self._queries.append((normalize(str(qname)), str(QTYPE[qtype])))
        resolution = self._zone.resolve(qname, qtype)
        if resolution.drop:
            return None
        return encode_response(query, resolution, tcp), resolution.delay


def _fqdn(name: str) -> str:
    return name if name.endswith(".") else f"{name}."
