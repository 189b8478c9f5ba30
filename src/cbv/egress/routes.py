"""Which egresses a callout may use: `[callout.egress_routes]`, most specific key first."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from cbv.egress.table import Egress

DEFAULT_ROUTE = "*"


def _within(name: str, key: str) -> bool:
    return name == key or name.endswith(f".{key}")


class EgressRoutes:
    """A key names a provider or a domain: it matches the domain verified and the mail
    exchangers' names, and its subdomains ("google.com" matches aspmx.l.google.com)."""

    def __init__(self, egresses: Sequence[Egress], routes: Mapping[str, list[str]]) -> None:
        by_name = {egress.name: egress for egress in egresses}
        self._routes = {key: tuple(by_name[name] for name in names)
                        for key, names in routes.items()}
        self._keys = sorted((key for key in self._routes if key != DEFAULT_ROUTE),
                            key=len, reverse=True)
        self._default = self._routes.get(DEFAULT_ROUTE, tuple(egresses))

    def pool_for(self, domain: str, hosts: Iterable[str]) -> tuple[str, tuple[Egress, ...]]:
        """(the route key chosen, its egresses in order) for a callout to `domain`'s `hosts`."""
        if not self._keys:  # no routes but the default: nothing to match
            return DEFAULT_ROUTE, self._default
        names = [domain.lower(), *(host.lower().rstrip(".") for host in hosts)]
        for key in self._keys:
            if any(_within(name, key) for name in names):
                return key, self._routes[key]
        return DEFAULT_ROUTE, self._default
