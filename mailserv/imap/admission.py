"""How many connections the server holds, in all and per client address.

A client controls how many connections it opens; each costs a file descriptor and some
memory, so both counts are bounded (``ServerSettings.max_connections`` and
``max_connections_per_address``).  A connection over a bound is told ``* BYE`` and closed.
"""

from __future__ import annotations

from collections import Counter

from twisted.internet.protocol import Protocol

from mailserv.imap.settings import ServerSettings


class ConnectionCounter:
    """Open connections, in all and per address; ``admit`` before, ``release`` after."""

    def __init__(self, settings: ServerSettings) -> None:
        self.settings = settings
        self.total = 0
        self._per_address: Counter[str] = Counter()

    def admit(self, address: str) -> str | None:
        """Count a new connection from ``address``; the reason to refuse it, or None."""
        if self.total >= self.settings.max_connections:
            return "Too many connections, try again later"
        if self._per_address[address] >= self.settings.max_connections_per_address:
            return "Too many connections from your address"
        self.total += 1
        self._per_address[address] += 1
        return None

    def release(self, address: str) -> None:
        self.total -= 1
        self._per_address[address] -= 1
        if self._per_address[address] <= 0:
            del self._per_address[address]


class Refused(Protocol):
    """Says why in one ``* BYE`` line, then hangs up."""

    def __init__(self, reason: str) -> None:
        self.reason = reason

    def connectionMade(self) -> None:
        assert self.transport is not None
        self.transport.write(b"* BYE " + self.reason.encode("ascii") + b"\r\n")
        self.transport.loseConnection()
