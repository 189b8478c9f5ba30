"""Senders that are never verified: bounces, ourselves, the trusted and the local."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from fnmatch import translate
from functools import lru_cache

from cbv.policy.addresses import normalised
from cbv.policy.context import RequestContext
from cbv.policy.rules import Rules

CLIENTS_REMEMBERED = 8192


class Patterns:
    """Addresses and domains with * and ? wildcards; an entry with '@' matches the whole
    address, one without matches the domain ("example.com" exactly, "*.example.com" below it).
    """

    def __init__(self, entries: Iterable[str]) -> None:
        items = list(entries)
        self._address = _compile(e for e in items if "@" in e)
        self._domain = _compile(e for e in items if "@" not in e)

    def match(self, address: str, domain: str) -> bool:
        return bool(
            (self._address is not None and self._address.match(address))
            or (self._domain is not None and self._domain.match(domain))
        )


def _compile(entries: Iterable[str]) -> re.Pattern[str] | None:
    parts = [translate(entry) for entry in entries]
    return re.compile("|".join(f"(?:{part})" for part in parts)) if parts else None


class Exclusions:
    """Decides whether a request's sender is left alone, and says why."""

    def __init__(
        self,
        own_senders: Iterable[str],
        local_domains: Iterable[str],
        local_networks: Iterable[str],
    ) -> None:
        self._own = frozenset(normalised(s)[0] for s in own_senders if s)
        self._local_domains = Patterns(local_domains)
        self._local_networks = tuple(ipaddress.ip_network(n, strict=False) for n in local_networks)
        self._local_clients: dict[str, bool] = {}  # mail servers keep coming back

    def reason(self, context: RequestContext, rules: Rules, null_sender_counts: bool
               ) -> str | None:
        """None when the request is to be verified."""
        if not context.sender:
            return "null sender" if null_sender_counts else None
        address, domain = normalised(context.sender)
        if address in self._own:
            return "own callout sender"
        if rules.exclude_authenticated and context.sasl_username:
            return "authenticated"
        if rules.allowlist and _allowlist(rules.allowlist).match(address, domain):
            return "allowlisted"
        if rules.exclude_local:
            if self._local_domains.match(address, domain):
                return "local sender"
            if self._local_networks and self._is_local_client(context.client_address):
                return "local network"
        return None

    def _is_local_client(self, client_address: str) -> bool:
        known = self._local_clients.get(client_address)
        if known is None:
            try:
                ip = ipaddress.ip_address(client_address)
            except ValueError:
                known = False
            else:
                known = any(ip in network for network in self._local_networks)
            if len(self._local_clients) >= CLIENTS_REMEMBERED:
                self._local_clients.clear()
            self._local_clients[client_address] = known
        return known


@lru_cache(maxsize=256)
def _allowlist(entries: tuple[str, ...]) -> Patterns:
    """Compiled once per distinct list: domain tables may each bring their own."""
    return Patterns(entries)
