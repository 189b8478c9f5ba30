"""How a callout's TCP connection to a mail exchanger is made: the seam egress plugs into.

The session never opens a socket itself; it asks a `Connector` to connect its asyncio
`Protocol` to a `Target` (an address the target filter already approved) through an
`Egress` (where the connection leaves this host from). Proxies and source-address pools are further
connectors and egress fields, not changes to the session.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Protocol

from cbv.callout.networks import TargetPolicy
from cbv.callout.plan import Target
from cbv.egress.settings import DEFAULT_EGRESS
from cbv.egress.table import Egress

DIRECT = Egress(DEFAULT_EGRESS, helo_name="localhost")  # the system's choice of address


class EgressFailed(Exception):
    """The egress itself failed (its proxy is down or refused us): try the next egress.

    A failure to reach the mail exchanger is an OSError or TimeoutError instead.
    """


class Connector(Protocol):
    def connect(self, target: Target, egress: Egress, protocol: asyncio.Protocol
                ) -> Awaitable[None]:
        """Connect `protocol` to `target.ip`:`target.port` through `egress`: once awaited,
        its `connection_made` has run, and every byte from the target goes to it. Raises
        OSError when the connection cannot be made; the caller bounds the time it may
        take. A connector that only picks another may hand back that one's awaitable (no
        coroutine of its own to step through on every wake-up of the connect)."""
        ...


class DirectConnector:
    """A plain TCP connection from this host, bound to the egress's source address."""

    async def connect(self, target: Target, egress: Egress, protocol: asyncio.Protocol) -> None:
        source = egress.source_for(target.ip)
        local = (source, 0) if source else None
        await asyncio.get_running_loop().create_connection(
            lambda: protocol, target.ip, target.port, local_addr=local)


class ForbiddenTarget(ConnectionRefusedError):
    """A target the filter denies reached a connector: refused before any socket exists."""


class FilteredConnector:
    """The target filter again, in front of every connector: the plan already dropped
    forbidden targets, and this makes sure no connector (direct, proxy, pool) can ever be
    handed one by a path that forgot to ask."""

    def __init__(self, inner: Connector, policy: TargetPolicy) -> None:
        self._inner = inner
        self._policy = policy

    def connect(self, target: Target, egress: Egress, protocol: asyncio.Protocol
                ) -> Awaitable[None]:
        why = self._policy.why_forbidden(target.ip)
        if why is not None:
            raise ForbiddenTarget(f"{target.ip} is in a forbidden network: {why}")
        return self._inner.connect(target, egress, protocol)
