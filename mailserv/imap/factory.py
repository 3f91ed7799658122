"""The factory an application listens with: ``IMAPServerFactory(portal)`` is all it takes."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import Any

from twisted.cred.portal import Portal
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.internet.protocol import Protocol, ServerFactory
from twisted.internet.ssl import CertificateOptions
from twisted.logger import Logger
from zope.interface import implementer

from mailserv.auth.sasl import Mechanisms, secret_from_tls
from mailserv.auth.throttle import ILoginThrottle, LoginThrottle
from mailserv.collector import IQuiet
from mailserv.events.metrics import IMetrics, NoMetrics
from mailserv.events.sink import IEventSink, NoEvents
from mailserv.imap.admission import ConnectionCounter, IConnectionLimits, Refused, admitted
from mailserv.imap.extensions import BUILT_IN
from mailserv.imap.registry import Extension, Registry
from mailserv.imap.server import IMAPServerProtocol
from mailserv.imap.session import Services
from mailserv.imap.settings import ServerSettings
from mailserv.slicing import Turns

_log = Logger()


@implementer(IQuiet)
class CommandsInFlight:
    """The commands running in a factory's sessions, and since when none has run.

    A command waiting for its client (IDLE for DONE, AUTHENTICATE for a response) does not
    count while it waits: it holds nothing of the process."""

    def __init__(self, clock: IReactorTime) -> None:
        self._clock = clock
        self.running = 0
        self._since: float | None = None
        """When the last command ended (None: none has run yet)."""

    def begin(self) -> None:
        self.running += 1

    def end(self) -> None:
        self.running -= 1
        if not self.running:
            self._since = self._clock.seconds()

    def quiet_for(self) -> float:
        if self.running:
            return 0.0
        if self._since is None:
            return float("inf")
        return max(0.0, self._clock.seconds() - self._since)


class IMAPServerFactory(ServerFactory):
    """Builds one protocol per connection; all connections share the portal and limits.

    ``tls`` enables STARTTLS.  For implicit TLS (port 993) wrap this factory in TLS at the
    endpoint; the protocol notices it is already secure.  ``mechanisms`` are the SASL
    mechanisms AUTHENTICATE offers (default: every one found in ``mailserv.plugins``, once);
    ``extensions`` what else the server speaks (default: :data:`extensions.BUILT_IN`).
    ``limits`` and ``throttle`` count connections and failed logins (default: here, in
    this process; a worker of ``--workers N`` passes the master-backed ones).  ``metrics``:
    what the engine counts into (default: nothing).  ``events`` hears of the changes the
    sessions make (default: nobody).  ``turns``: the reactor's turns as the sessions' long
    commands share them, with the backend's own sliced work if it has some (default: the
    sessions' alone).
    """

    def __init__(
        self,
        portal: Portal,
        settings: ServerSettings | None = None,
        tls: CertificateOptions | None = None,
        throttle: ILoginThrottle | None = None,
        clock: IReactorTime | None = None,
        mechanisms: Mechanisms | None = None,
        extensions: Iterable[Extension] = BUILT_IN,
        limits: IConnectionLimits | None = None,
        metrics: IMetrics | None = None,
        events: IEventSink | None = None,
        turns: Turns | None = None,
    ) -> None:
        if clock is None:
            from twisted.internet import reactor

            clock = reactor  # type: ignore[assignment]
        assert clock is not None
        settings = settings or ServerSettings()
        self.services = Services(
            portal=portal,
            settings=settings,
            clock=clock,
            turns=turns if turns is not None else Turns(clock),
            throttle=throttle
            or LoginThrottle(clock, user_max_failures=settings.user_max_auth_failures),
            mechanisms=mechanisms if mechanisms is not None else Mechanisms.discover(),
            tls=tls,
            registry=Registry.build(extensions),
            metrics=metrics if metrics is not None else NoMetrics(),
            events=events if events is not None else NoEvents(),
        )
        secret = secret_from_tls(tls)
        if secret is not None:
            self.services = dataclasses.replace(self.services, secret=secret)
        self.settings = self.services.settings
        self.tls = tls
        self.clock = clock
        self.connections: IConnectionLimits = limits or ConnectionCounter(self.settings)
        self.sessions: set[IMAPServerProtocol] = set()
        """The open connections (for ``shutdown``)."""
        self.in_flight = CommandsInFlight(clock)
        """The commands its sessions run now (the collector sweeps when there are none)."""
        self._gone_waiters: list[Deferred[None]] = []
        self.services.metrics.watch_connections(self._connection_states)

    def _connection_states(self) -> Iterable[tuple[str, str]]:
        """(listener, state) of each open session, for the connections gauge."""
        return [(s.listener, s.metrics_state) for s in self.sessions if not s.ended]

    def buildProtocol(self, addr: Any) -> Protocol:
        return admitted(self.connections, addr, self._decided)

    def _decided(self, address: str, refusal: str | None) -> Protocol:
        """The protocol of a connection from ``address`` once counted (or refused)."""
        if refusal is not None:
            _log.info("Refused a connection from {address}: {why}", address=address, why=refusal)
            return Refused(refusal, self.clock, self.settings.close_timeout)
        protocol = IMAPServerProtocol(self)
        protocol.factory = self
        self.sessions.add(protocol)

        def closed() -> None:
            self.connections.release(address)
            self.sessions.discard(protocol)
            if not self.sessions:
                waiters, self._gone_waiters = self._gone_waiters, []
                for waiter in waiters:
                    waiter.callback(None)

        protocol.on_close = closed
        return protocol

    def shutdown(self, text: str = "Server shutting down") -> Deferred[None]:
        """Tell every open session BYE and close it; fires once all are gone (each within
        ``settings.close_timeout``, or just after if its command is still running).

        Stop listening first: a connection accepted meanwhile is not waited for.
        """
        done: Deferred[None] = Deferred()
        if not self.sessions:
            done.callback(None)
            return done
        self._gone_waiters.append(done)
        for session in list(self.sessions):
            session.shutdown(text)
        return done
