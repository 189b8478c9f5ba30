"""Zone data for FakeDNS, answered the way a recursive resolver would answer."""

import enum
import threading
from dataclasses import dataclass, field
from typing import Any

from dnslib import QTYPE, RCODE, RR, SOA, DNSLabel

NEGATIVE_TTL = 60
MAX_CNAME_HOPS = 16
SOA_TIMERS = (1, 3600, 600, 86400, NEGATIVE_TTL)  # serial, refresh, retry, expire, minimum


class Behaviour(enum.Enum):
    """A failure forced on a name, overriding whatever records it has."""

    NXDOMAIN = "nxdomain"
    SERVFAIL = "servfail"
    TIMEOUT = "timeout"


@dataclass(frozen=True)
class Record:
    """Record data kept without an owner so the answer can echo the query's spelling."""

    rtype: int
    ttl: int
    rdata: Any  # a dnslib RD instance; dnslib is untyped


@dataclass
class Resolution:
    """What to answer for one question; `drop` means never answer at all."""

    rcode: int
    answer: list[Any] = field(default_factory=list)
    authority: list[Any] = field(default_factory=list)
    drop: bool = False
    delay: float = 0.0


def normalize(name: str) -> str:
    """Names compare case-insensitively, with or without the trailing dot."""
    return name.lower().rstrip(".")


def _soa(owner: Any) -> Any:
    """A negative answer needs an SOA whose minimum sets how long it may be cached.

    Built from raw labels, so odd names (the root, long or non-IDNA labels) cannot break it.
    """
    apex = owner.label[-2:]
    rdata = SOA(DNSLabel((b"ns", *apex)), DNSLabel((b"hostmaster", *apex)), SOA_TIMERS)
    return RR(DNSLabel(apex), QTYPE.SOA, rdata=rdata, ttl=NEGATIVE_TTL)


class Zone:
    """Locked throughout: tests change it while the server thread reads it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._records: dict[str, list[Record]] = {}
        self._behaviours: dict[str, Behaviour] = {}
        self._delays: dict[str, float] = {}

    def add(self, name: str, record: Record) -> None:
        with self._lock:
            self._records.setdefault(normalize(name), []).append(record)

    def set_behaviour(self, name: str, behaviour: Behaviour) -> None:
        with self._lock:
            self._behaviours[normalize(name)] = behaviour

    def set_delay(self, name: str, seconds: float) -> None:
        with self._lock:
            self._delays[normalize(name)] = seconds

    def remove(self, name: str) -> None:
        key = normalize(name)
        with self._lock:
            self._records.pop(key, None)
            self._behaviours.pop(key, None)
            self._delays.pop(key, None)

    def clear(self) -> None:
        with self._lock:
            self._records.clear()
            self._behaviours.clear()
            self._delays.clear()

    def resolve(self, qname: Any, qtype: int) -> Resolution:
        """`qname` is the query's dnslib label, echoed as spelt in the answer."""
        with self._lock:
            resolution = self._follow(qname, qtype)
            resolution.delay = self._delays.get(normalize(str(qname)), 0.0)
        return resolution

    def _follow(self, qname: Any, qtype: int) -> Resolution:
        """Chase CNAMEs as a recursive resolver does, keeping them in the answer."""
        owner = qname
        name = normalize(str(owner))
        answer: list[Any] = []
        seen: set[str] = set()
        while True:
            behaviour = self._behaviours.get(name)
            if behaviour is Behaviour.TIMEOUT:
                return Resolution(RCODE.NOERROR, drop=True)
            if behaviour is Behaviour.SERVFAIL:
                return Resolution(RCODE.SERVFAIL)
            records = [] if behaviour is Behaviour.NXDOMAIN else self._records.get(name, [])
            if not records:
                return Resolution(RCODE.NXDOMAIN, answer, [_soa(owner)])
            wanted = [r for r in records if qtype in (r.rtype, QTYPE.ANY)]
            if wanted:
                answer += [RR(owner, r.rtype, rdata=r.rdata, ttl=r.ttl) for r in wanted]
                return Resolution(RCODE.NOERROR, answer)
            cname = next((r for r in records if r.rtype == QTYPE.CNAME), None)
            if cname is None:
                return Resolution(RCODE.NOERROR, answer, [_soa(owner)])
            answer.append(RR(owner, QTYPE.CNAME, rdata=cname.rdata, ttl=cname.ttl))
            seen.add(name)
            owner = cname.rdata.label
            name = normalize(str(owner))
            if name in seen or len(seen) > MAX_CNAME_HOPS:
                return Resolution(RCODE.SERVFAIL)
