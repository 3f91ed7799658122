"""How many connections the server holds, in all and per client address.

A client controls how many connections it opens; each costs a file descriptor and some
memory, so both counts are bounded (``ServerSettings.max_connections`` and
``max_connections_per_address``).  A connection over a bound is told ``* BYE`` and closed.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

from twisted.internet.defer import CancelledError, Deferred, succeed
from twisted.internet.interfaces import IDelayedCall, IPushProducer, IReactorTime
from twisted.internet.protocol import Protocol, connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import Interface, implementer

from mailserv.imap.hangup import hang_up
from mailserv.imap.settings import ServerSettings

_log = Logger()

MAX_EARLY_BYTES = 65536
"""What a client may send before its admission is decided (it should wait for the greeting)."""


class IConnectionLimits(Interface):
    """Counts the open connections against ``max_connections`` and its per-address bound."""

    def admit(address: str) -> Deferred[str | None]:
        """Count a new connection from ``address``; fires with the reason to refuse it, or
        None (then ``release`` it once closed).  Cancelling the answer before it fires (the
        connection closed meanwhile) counts the connection out, whatever the answer."""

    def release(address: str) -> None:
        """An admitted connection from ``address`` has closed."""


@implementer(IConnectionLimits)
class ConnectionCounter:
    """Open connections, in all and per address, counted here: ``admit`` answers at once."""

    def __init__(self, settings: ServerSettings) -> None:
        self.settings = settings
        self.total = 0
        self._per_address: Counter[str] = Counter()

    def admit(self, address: str) -> Deferred[str | None]:
        return succeed(self.take(address))

    def take(self, address: str) -> str | None:
        """Count a new connection from ``address``; the reason to refuse it, or None."""
        if self.total >= self.settings.max_connections:
            return "Too many connections, try again later"
        if self._per_address[address] >= self.settings.max_connections_per_address:
            return "Too many connections from your address"
        self.total += 1
        self._per_address[address] += 1
        return None

    def release(self, address: str, count: int = 1) -> None:
        self.total -= count
        self._per_address[address] -= count
        if self._per_address[address] <= 0:
            del self._per_address[address]


def admitted(
    limits: IConnectionLimits, addr: object, build: Callable[[str, str | None], Protocol]
) -> Protocol:
    """The protocol of a new connection from ``addr``, once ``limits`` counted it:
    ``build(address, refusal)`` at once when the count is local, else when the answer comes
    (:class:`AwaitingAdmission` holds the connection meanwhile).  Every listener that counts
    against ``max_connections`` (IMAP, LMTP) admits this way."""
    address = str(getattr(addr, "host", addr))
    answer = limits.admit(address)
    decided, refusal = decided_now(answer)
    if decided:
        return build(address, refusal)
    return AwaitingAdmission(address, answer, build)


def decided_now(answer: Deferred[str | None]) -> tuple[bool, str | None]:
    """(True, the answer) when ``answer`` has fired already (a local count), else (False, None)."""
    seen: list[str | None] = []

    def keep(why: str | None) -> str | None:
        seen.append(why)
        return why

    answer.addCallback(keep)
    return (True, seen[0]) if seen else (False, None)


class AwaitingAdmission(Protocol):
    """A connection whose admission is being decided elsewhere (the master of the workers).

    What the client sends meanwhile is kept (reading pauses once ``MAX_EARLY_BYTES`` are
    kept, and the client waits); once the answer comes, ``build`` makes the connection's
    protocol (a session, or ``Refused``), which takes the transport over and hears everything
    from then on.  Reading goes on until then so that a client hanging up is seen at once: its
    answer is cancelled, which counts it out even while the master is slow to answer.
    """

    def __init__(
        self,
        address: str,
        answer: Deferred[str | None],
        build: Callable[[str, str | None], Protocol],
    ) -> None:
        self._address = address
        self._answer = answer
        self._build = build
        self._inner: Protocol | None = None
        self._early: list[bytes] = []
        self._early_size = 0
        self._paused = False
        self._lost: Failure | None = None

    def connectionMade(self) -> None:
        self._answer.addCallbacks(self._decided, self._failed)

    def _failed(self, failure: Failure) -> None:
        if failure.check(CancelledError):
            return  # lost before the answer: counted out by the cancel
        _log.failure("No admission answer for {address}", failure, address=self._address)
        self._decided("Server unavailable, try again later")

    def _decided(self, why: str | None) -> None:
        assert self.transport is not None
        inner = self._inner = self._build(self._address, why)
        inner.makeConnection(self.transport)
        if self._lost is not None:
            return
        if self._paused:
            # Before the early bytes: if they fill its queue, ``inner`` pauses us again.
            IPushProducer(self.transport).resumeProducing()
        early, self._early = b"".join(self._early), []
        if early:
            inner.dataReceived(early)

    def dataReceived(self, data: bytes) -> None:
        if self._inner is not None:
            self._inner.dataReceived(data)
            return
        self._early_size += len(data)
        self._early.append(data)
        full = self._early_size > MAX_EARLY_BYTES
        if full and not self._paused and IPushProducer.providedBy(self.transport):
            self._paused = True
            IPushProducer(self.transport).pauseProducing()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self._lost = reason
        if self._inner is not None:
            self._inner.connectionLost(reason)
        else:
            self._answer.cancel()


class Refused(Protocol):
    """Says why in one line, ``* BYE`` and the reason (``prefix``: the protocol's own
    opening, e.g. LMTP's ``421 4.3.2``), then hangs up (aborting after ``close_timeout``)."""

    def __init__(
        self, reason: str, clock: IReactorTime, close_timeout: float, prefix: bytes = b"* BYE "
    ) -> None:
        self.reason = reason
        self._prefix = prefix
        self._clock = clock
        self._close_timeout = close_timeout
        self._abort: IDelayedCall | None = None

    def connectionMade(self) -> None:
        assert self.transport is not None
        self.transport.write(self._prefix + self.reason.encode("ascii") + b"\r\n")
        self._abort = hang_up(self.transport, self._clock, self._close_timeout)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        if self._abort is not None and self._abort.active():
            self._abort.cancel()
