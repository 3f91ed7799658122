"""How many connections the server holds, in all and per client address.

A client controls how many connections it opens; each costs a file descriptor and some
memory, so both counts are bounded (``ServerSettings.max_connections`` and
``max_connections_per_address``).  A connection over a bound is told ``* BYE`` and closed.
"""

from __future__ import annotations

from collections import Counter

from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.internet.protocol import Protocol, connectionDone
from twisted.python.failure import Failure

from mailserv.imap.hangup import hang_up
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
    """Says why in one ``* BYE`` line, then hangs up (aborting after ``close_timeout``)."""

    def __init__(self, reason: str, clock: IReactorTime, close_timeout: float) -> None:
        self.reason = reason
        self._clock = clock
        self._close_timeout = close_timeout
        self._abort: IDelayedCall | None = None

    def connectionMade(self) -> None:
        assert self.transport is not None
        self.transport.write(b"* BYE " + self.reason.encode("ascii") + b"\r\n")
        self._abort = hang_up(self.transport, self._clock, self._close_timeout)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        if self._abort is not None and self._abort.active():
            self._abort.cancel()
