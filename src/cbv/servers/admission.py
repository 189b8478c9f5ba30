"""The connection cap of one listener (`[server] max_connections`)."""

from __future__ import annotations

import logging

from cbv.servers.logs import event

LOG = logging.getLogger("cbv.server")
REARM_BELOW = 0.9  # the cap is logged again once the listener has fallen below 90 % of it


class ConnectionCap:
    """Counts one listener's open connections. Past the limit a new connection is closed
    at once: a client that opens thousands cannot take the daemon's memory or file
    descriptors from the others. Logged once each time the cap is reached, not per
    connection refused."""

    def __init__(self, listener: str) -> None:
        self.listener = listener
        self.open = 0
        self.refused = 0
        self._full = False

    def admit(self, limit: int) -> bool:
        if self.open >= limit:
            self.refused += 1
            if not self._full:
                self._full = True
                event(LOG, logging.WARNING, "connection limit reached, new connections closed",
                      listener=self.listener, max_connections=limit)
            return False
        self.open += 1
        if self._full and self.open < limit * REARM_BELOW:
            self._full = False
        return True

    def release(self) -> None:
        self.open -= 1
