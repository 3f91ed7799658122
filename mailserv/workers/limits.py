"""Limits that hold for all the workers together: the master counts, the children ask.

``max_connections``, ``max_connections_per_address`` and the failed-login throttle bound
what one client address may do to the server, not to one of its processes: counted in each
child, they would be N times looser.  So the master keeps the only counts
(``SharedLimits``), and each child speaks AMP with it over a socket pair (the child's end is
its file descriptor ``wire.CHANNEL_FD``):

- ``Admit``: a connection was accepted; the master counts it or says why not, and sends the
  failed-login record of the address's network along (the greeting waits for this answer:
  one round trip).  ``Release``: it closed, whether before or after the answer reached the
  child.  Each connection has a ticket, so a release names exactly what an admit counted: a
  connection closed while the master is slow is counted out in the order its channel said
  so, whatever the other channels say meanwhile.  A child's counts go with its channel: a
  child that dies frees what it held.
- ``LoginFailed`` / ``LoginSucceeded``: a child tells the master, which tells every other
  child.  Each child keeps a copy of the record (``SharedLoginThrottle``), so the engine
  reads it without waiting, and a failure in one worker delays and blocks that network's
  logins in all.  A failure names the user tried too, counted per user the same way.  The
  master answers a ``LoginFailed`` once every other child has acknowledged it (or
  :data:`RELAY_BOUND` passed), with whether that failure locked the user in its record (the
  one record where failures of all the children come in one order): the engine holds the
  failed login's NO until then, so a client told NO has its failure counted in every
  worker, and exactly one worker logs the lockout.
- ``UserFailures``: the master's per-user record, sent to a child as its channel opens
  (a child started later, or restarted), before any answer to its ``Admit``: the channel
  keeps order, so no connection of that child signs in before the record is in.  (A
  network's record comes with each ``Admit``.)
- ``NameChanged``: a child's session created, deleted, renamed or (un)subscribed a mailbox;
  the master tells every child, that one too (``ours``), whose NOTIFY sessions of that
  user are told (:class:`mailserv.imap.notify.MailboxBoard`): one order for all, the
  master's, so a change never overtakes an earlier one made in another child.
- ``MetricsPage``: with ``--metrics``, the master asks each child for its metrics when
  scraped (:class:`mailserv.events.metrics.WorkerMetrics`).
"""

from __future__ import annotations

import itertools
import os
import socket
from collections import Counter
from typing import Any

from twisted.internet.defer import Deferred, DeferredList
from twisted.internet.interfaces import IAddress, IReactorTime
from twisted.internet.protocol import Factory, connectionDone
from twisted.logger import Logger
from twisted.protocols import amp
from twisted.python.failure import Failure
from zope.interface import implementer

from mailserv.auth.throttle import ILoginThrottle, LoginThrottle
from mailserv.events.metrics import PageSource, SnapshotPages
from mailserv.imap.admission import ConnectionCounter, IConnectionLimits
from mailserv.imap.notify import NAME_CHANGES, MailboxBoard, NameChange
from mailserv.imap.settings import ServerSettings

_log = Logger()


class Admit(amp.Command):
    arguments = [(b"address", amp.Unicode()), (b"ticket", amp.Integer())]
    response = [
        (b"refusal", amp.Unicode(optional=True)),
        (b"failures", amp.ListOf(amp.Float())),
    ]


class Release(amp.Command):
    arguments = [(b"ticket", amp.Integer())]
    requiresAnswer = False


class LoginFailed(amp.Command):
    arguments = [
        (b"address", amp.Unicode()),
        (b"at", amp.Float()),
        (b"user", amp.Unicode(optional=True)),  # the name tried, for the per-user record
    ]
    response = [(b"locked", amp.Boolean())]


class UserFailures(amp.Command):
    arguments = [
        (b"records", amp.AmpList([(b"user", amp.Unicode()), (b"times", amp.ListOf(amp.Float()))]))
    ]
    requiresAnswer = False


RELAY_BOUND = 5.0
"""Seconds the master waits for the other children to acknowledge a failed login."""
_RECORDS_BYTES = 40_000
"""Bytes of user records per ``UserFailures`` (an AMP value holds at most 65,535)."""


class LoginSucceeded(amp.Command):
    arguments = [(b"address", amp.Unicode())]
    requiresAnswer = False


class NameChanged(amp.Command):
    arguments = [
        (b"user", amp.Unicode()),
        (b"kind", amp.Unicode()),
        (b"name", amp.Unicode()),
        (b"old", amp.Unicode()),
        (b"ours", amp.Boolean(optional=True)),  # to the child that made it
    ]
    requiresAnswer = False


class MetricsPage(amp.Command):
    arguments = [(b"page", amp.Integer())]
    response = [(b"data", amp.String()), (b"pages", amp.Integer())]


# The master's side.


class SharedLimits:
    """The master's counts for all its children: connections, and failed logins."""

    def __init__(self, settings: ServerSettings, clock: IReactorTime) -> None:
        self.clock = clock
        self.connections = ConnectionCounter(settings)
        self.throttle = LoginThrottle(clock, user_max_failures=settings.user_max_auth_failures)
        self._held: dict[WorkerChannel, dict[int, str]] = {}
        """Per channel, the address of each ticket counted."""

    def connect(self, reactor: Any, worker: str = "") -> socket.socket:
        """A new child's channel: the end to hand the child (ours is served here).
        ``worker`` names the child in its metrics."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        channel = WorkerChannel(self, worker)
        reactor.adoptStreamConnection(ours.fileno(), socket.AF_UNIX, _Serve(channel))
        ours.close()  # the reactor holds its own duplicate
        return theirs

    def joined(self, channel: WorkerChannel) -> None:
        self._held[channel] = {}
        batch: list[dict[str, object]] = []
        size = 0
        for user, times in self.throttle.users.records():
            batch.append({"user": user, "times": times})
            size += 4 * len(user) + 32 * len(times) + 32
            if size > _RECORDS_BYTES:
                channel.callRemote(UserFailures, records=batch)
                batch, size = [], 0
        if batch:
            channel.callRemote(UserFailures, records=batch)

    def left(self, channel: WorkerChannel) -> None:
        """The child is gone: what it held is free."""
        held = self._held.pop(channel, {})
        for address, count in Counter(held.values()).items():
            self.connections.release(address, count)
        if held:
            _log.info("Released {count} connections of a worker gone", count=len(held))

    def admit(self, channel: WorkerChannel, address: str, ticket: int) -> str | None:
        held = self._held.get(channel)
        if held is None:
            return "Server shutting down"
        refusal = self.connections.take(address)
        if refusal is None:
            held[ticket] = address
        return refusal

    def release(self, channel: WorkerChannel, ticket: int) -> None:
        address = self._held.get(channel, {}).pop(ticket, None)
        if address is not None:  # else not counted (refused, or counted by a channel gone)
            self.connections.release(address)

    async def failed(self, channel: WorkerChannel, address: str, at: float, user: str) -> bool:
        """Record and relay a failure; whether it locked ``user``, once the other children
        acknowledged it (or RELAY_BOUND passed: a child that hangs holds no one's NO)."""
        locked = self.throttle.record_locking(address, at, user)
        acks = [
            other.callRemote(LoginFailed, address=address, at=at, user=user)
            for other in self._held
            if other is not channel
        ]
        relayed: Deferred[None] = Deferred()
        timer = self.clock.callLater(RELAY_BOUND, relayed.callback, None)

        def acknowledged(_: object) -> None:
            if timer.active():
                timer.cancel()
                relayed.callback(None)

        DeferredList(acks, consumeErrors=True).addCallback(acknowledged)
        await relayed
        return locked

    def succeeded(self, channel: WorkerChannel, address: str) -> None:
        self.throttle.record_success(address)
        self._tell_others(channel, LoginSucceeded, address=address)

    def name_changed(self, sender: WorkerChannel, change: dict[str, str]) -> None:
        """Passed to every child, the sender too: each tells its sessions in this order."""
        for channel in self._held:
            channel.callRemote(NameChanged, ours=channel is sender, **change)

    def metrics_sources(self) -> list[tuple[str, PageSource]]:
        """Each child's name and how to ask it for its metrics."""
        return [(channel.worker, channel.metrics_page) for channel in self._held]

    def _tell_others(self, sender: WorkerChannel, command: type[amp.Command], **args: Any) -> None:
        for channel in self._held:
            if channel is not sender:
                channel.callRemote(command, **args)


class WorkerChannel(amp.AMP):
    """The master's end of one child's channel."""

    def __init__(self, limits: SharedLimits, worker: str = "") -> None:
        super().__init__()
        self._limits = limits
        self.worker = worker

    async def metrics_page(self, page: int) -> tuple[bytes, int]:
        answer = await self.callRemote(MetricsPage, page=page)
        return answer["data"], answer["pages"]

    def connectionMade(self) -> None:
        super().connectionMade()
        self._limits.joined(self)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        super().connectionLost(reason)
        self._limits.left(self)

    @Admit.responder
    def admit(self, address: str, ticket: int) -> dict[str, object]:
        refusal = self._limits.admit(self, address, ticket)
        return {"refusal": refusal, "failures": self._limits.throttle.history(address)}

    @Release.responder
    def release(self, ticket: int) -> dict[str, object]:
        self._limits.release(self, ticket)
        return {}

    @LoginFailed.responder
    def login_failed(
        self, address: str, at: float, user: str | None = None
    ) -> Deferred[dict[str, object]]:
        async def answer() -> dict[str, object]:
            return {"locked": await self._limits.failed(self, address, at, user or "")}

        return Deferred.fromCoroutine(answer())

    @LoginSucceeded.responder
    def login_succeeded(self, address: str) -> dict[str, object]:
        self._limits.succeeded(self, address)
        return {}

    @NameChanged.responder
    def name_changed(
        self, user: str, kind: str, name: str, old: str, ours: bool | None = None
    ) -> dict[str, object]:
        self._limits.name_changed(self, {"user": user, "kind": kind, "name": name, "old": old})
        return {}


# A child's side.


class MasterLink(amp.AMP):
    """A child's end of its channel; keeps the copy of the failed-login record, and
    answers the master's scrapes from ``metrics`` (empty without)."""

    def __init__(self, mirror: LoginThrottle, metrics: SnapshotPages | None = None) -> None:
        super().__init__()
        self.mirror = mirror
        self._metrics = metrics
        self._board: MailboxBoard | None = None

    def share_names(self, board: MailboxBoard) -> None:
        """Relay ``board``'s name changes to the other children, and theirs to it."""
        self._board = board
        board.relay = self._relay

    def _relay(self, change: NameChange) -> None:
        self.callRemote(
            NameChanged, user=change.user, kind=change.kind, name=change.name, old=change.old
        )

    @NameChanged.responder
    def name_changed(
        self, user: str, kind: str, name: str, old: str, ours: bool | None = None
    ) -> dict[str, object]:
        if self._board is not None and kind in NAME_CHANGES:
            self._board.told(NameChange(user, kind, name, old), ours=bool(ours))
        return {}

    @MetricsPage.responder
    def metrics_page(self, page: int) -> dict[str, object]:
        data, pages = self._metrics.page(page) if self._metrics is not None else (b"", 0)
        return {"data": data, "pages": pages}

    @LoginFailed.responder
    def login_failed(self, address: str, at: float, user: str | None = None) -> dict[str, object]:
        self.mirror.record_failure(address, at, user=user or "")
        return {"locked": False}  # the master tells whom a failure locked

    @UserFailures.responder
    def user_failures(self, records: list[dict[str, Any]]) -> dict[str, object]:
        if self.mirror.users_counted:
            for record in records:
                self.mirror.users.merge(record["user"], record["times"])
        return {}

    @LoginSucceeded.responder
    def login_succeeded(self, address: str) -> dict[str, object]:
        self.mirror.record_success(address)
        return {}

    def adopt(self, reactor: Any, fd: int) -> None:
        """Speak over the inherited socket ``fd`` (closed here: the reactor keeps a copy)."""
        reactor.adoptStreamConnection(fd, socket.AF_UNIX, _Serve(self))
        os.close(fd)


@implementer(IConnectionLimits)
class SharedConnectionLimits:
    """A child's connection counts: the master's answer (one round trip per connection).

    Cancelling an answer not yet given (the connection closed meanwhile) releases its ticket
    at once, on the same channel as the admit, so the master counts it out in order.
    """

    def __init__(self, link: MasterLink) -> None:
        self._link = link
        self._tickets = itertools.count(1)
        self._admitted: dict[str, list[int]] = {}
        """Per address, the tickets of its connections admitted and open."""

    def admit(self, address: str) -> Deferred[str | None]:
        ticket = next(self._tickets)

        def withdraw(answer: Deferred[str | None]) -> None:
            self._link.callRemote(Release, ticket=ticket)

        answer: Deferred[str | None] = Deferred(withdraw)
        asked: Deferred[dict[str, Any]] = self._link.callRemote(
            Admit, address=address, ticket=ticket
        )

        def answered(reply: dict[str, Any]) -> None:
            if answer.called:
                return  # cancelled: released already
            self._link.mirror.merge(address, reply["failures"])
            refusal: str | None = reply["refusal"]
            if refusal is None:
                self._admitted.setdefault(address, []).append(ticket)
            answer.callback(refusal)

        def failed(failure: Failure) -> None:
            if not answer.called:
                answer.errback(failure)

        asked.addCallbacks(answered, failed)
        return answer

    def release(self, address: str) -> None:
        tickets = self._admitted.get(address)
        if not tickets:
            return
        ticket = tickets.pop()
        if not tickets:
            del self._admitted[address]
        self._link.callRemote(Release, ticket=ticket)


@implementer(ILoginThrottle)
class SharedLoginThrottle:
    """A child's failed-login record: read from its copy, each change told to the master."""

    def __init__(self, link: MasterLink) -> None:
        self._link = link
        self._mirror = link.mirror

    def failures(self, address: str) -> int:
        return self._mirror.failures(address)

    def delay_for(self, address: str) -> float:
        return self._mirror.delay_for(address)

    def blocked(self, address: str) -> bool:
        return self._mirror.blocked(address)

    def record_failure(self, address: str, *, user: str = "") -> None:
        self.login_failed(address, user=user).addErrback(_relay_failed)

    def login_failed(self, address: str, *, user: str = "") -> Deferred[bool]:
        at = self._mirror.clock.seconds()
        self._mirror.record_failure(address, at, user=user)
        answer = self._link.callRemote(LoginFailed, address=address, at=at, user=user)
        return answer.addCallback(lambda reply: bool(reply["locked"]))

    def user_delay(self, user: str) -> float:
        return self._mirror.user_delay(user)

    def user_blocked(self, user: str) -> bool:
        return self._mirror.user_blocked(user)

    def record_success(self, address: str) -> None:
        self._mirror.record_success(address)
        self._link.callRemote(LoginSucceeded, address=address)


def _relay_failed(failure: Failure) -> None:
    _log.failure("Telling the master of a failed login failed", failure)


class _Serve(Factory):
    """Hands out one protocol already built (a channel has exactly one connection)."""

    def __init__(self, protocol: amp.AMP) -> None:
        self._protocol = protocol

    def buildProtocol(self, addr: IAddress | None) -> amp.AMP:
        return self._protocol
