"""One worker: ``python -m mailserv.workers FD:LABEL...`` (run by the master).

The configuration comes as the first line of stdin (JSON), not on the command line, where
``ps`` would show every local user the backend's options (a database URL's password).

A whole server of its own (backend, portal, factory) that adopts the listening sockets it
inherited and accepts on them once its backend has started.  Connection counts and the
failed-login record are the master's, asked over the channel it inherited
(``mailserv.workers.limits``).  It logs to stderr, which the master reads, and stops (BYE
to its sessions, then the backend) on SIGTERM or when its stdin closes: the master is gone.
"""

from __future__ import annotations

import os
import socket
import sys
import threading
import time
from collections.abc import Sequence
from typing import Any

from twisted.application.service import MultiService, Service
from twisted.internet import stdio
from twisted.internet.interfaces import IListeningPort, IProtocolFactory
from twisted.internet.protocol import Protocol
from twisted.logger import FileLogObserver, Logger, eventAsText, globalLogBeginner
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.python.failure import Failure

from mailserv.auth.throttle import LoginThrottle
from mailserv.delivery.service import lmtp_factory, managesieve_factory
from mailserv.events.logs import json_observer
from mailserv.events.metrics import PrometheusMetrics, SnapshotPages
from mailserv.tap import AcceptGate, BackendService, build_server
from mailserv.workers.limits import MasterLink, SharedConnectionLimits, SharedLoginThrottle
from mailserv.workers.wire import CHANNEL_FD, Listener, decode_config, decode_listener

_log = Logger()


class _ParentWatch(Protocol):
    """Our stdin is a pipe from the master: when it closes, the master is gone."""

    def __init__(self, reactor: Any) -> None:
        self._reactor = reactor

    def connectionLost(self, reason: Failure | None = None) -> None:
        if self._reactor.running:
            _log.info("The master is gone; stopping")
            self._reactor.stop()


class _AdoptedPorts(Service):
    """The inherited listening sockets, adopted on start (held by the gate until the
    backend has started), closed on stop."""

    def __init__(
        self, reactor: Any, listeners: Sequence[Listener], factory: IProtocolFactory,
        tls_factory: IProtocolFactory, gate: AcceptGate, lmtp: IProtocolFactory | None = None,
    ) -> None:  # fmt: skip
        self._reactor = reactor
        self._listeners = listeners
        self._factories = {"IMAP": factory, "IMAPS": tls_factory}
        if lmtp is not None:
            self._factories["LMTP"] = lmtp
        self._gate = gate
        self._ports: list[IListeningPort] = []

    def add_factory(self, label: str, factory: IProtocolFactory) -> None:
        self._factories[label] = factory

    def startService(self) -> None:
        super().startService()
        for listener in self._listeners:
            family = socket.socket(fileno=listener.fd)
            kind = family.family
            family.detach()
            port = self._reactor.adoptStreamPort(listener.fd, kind, self._factories[listener.label])
            os.close(listener.fd)  # the reactor holds its own duplicate
            self._ports.append(port)
            self._gate.add(listener.label, port)

    def stopService(self) -> Any:
        super().stopService()
        for port in self._ports:
            port.stopListening()
        self._ports = []


def main(argv: Sequence[str]) -> int:
    if not argv:
        print("usage: python -m mailserv.workers FD:LABEL... < CONFIG-JSON", file=sys.stderr)
        return 2
    from twisted.internet import reactor

    config = decode_config(sys.stdin.buffer.readline().decode("utf-8"))
    # The master stamps and labels each line it reads from us (JSON: takes the event).
    if config.log_format == "json":
        observer = json_observer(sys.stderr)
    else:
        observer = FileLogObserver(
            sys.stderr, lambda e: eventAsText(e, includeTimestamp=False) + "\n"
        )
    globalLogBeginner.beginLoggingTo([observer], redirectStandardIO=False)
    listeners = [decode_listener(text) for text in argv]
    # The master asks for our metrics when it is scraped.
    metrics = PrometheusMetrics() if config.metrics is not None else None
    pages = SnapshotPages(metrics.registry) if metrics is not None else None
    # Connection counts and the failed-login record are the master's, for all its children.
    mirror = LoginThrottle(reactor, user_max_failures=config.settings.user_max_auth_failures)
    link = MasterLink(mirror, pages)
    link.adopt(reactor, CHANNEL_FD)
    limits, throttle = SharedConnectionLimits(link), SharedLoginThrottle(link)
    parts = build_server(
        config, reactor, limits=limits, throttle=throttle, metrics=metrics, deliver_events=False
    )
    link.share_names(parts.factory.services.board)  # NOTIFY's name events, for every child
    gate = AcceptGate()
    top = MultiService()
    if parts.webhooks is not None:
        parts.webhooks.setServiceParent(top)  # queued here, sent by the master
    service = BackendService(parts.backend, reactor, gate, parts.factory, own_process=True)
    service.setServiceParent(top)
    tls_factory = TLSMemoryBIOFactory(parts.tls.options, False, parts.factory)
    # LMTP is served by every child too, from the one listening socket they share.
    lmtp = None
    if config.lmtp:
        lmtp = lmtp_factory(
            parts.backend, parts.factory, reactor, config.data_dir, config.submission
        )
    adopted = _AdoptedPorts(reactor, listeners, parts.factory, tls_factory, gate, lmtp)
    if config.managesieve:  # served by every child too, like LMTP
        sends_mail = config.submission is not None
        sieve = managesieve_factory(parts.factory, config.data_dir, sends_mail)
        adopted.add_factory("MANAGESIEVE", sieve)
        adopted.add_factory("MANAGESIEVES", TLSMemoryBIOFactory(parts.tls.options, False, sieve))
    adopted.setServiceParent(top)
    stdio.StandardIO(_ParentWatch(reactor))
    reactor.callWhenRunning(top.startService)
    reactor.addSystemEventTrigger("before", "shutdown", top.stopService)
    reactor.run()
    leave_lingering_threads()
    return 0


EXIT_GRACE = 5.0
"""Seconds a child waits, once its reactor has stopped, for threads still running before it
exits without them."""


def leave_lingering_threads(grace: float = EXIT_GRACE) -> None:
    """Exit at once (``os._exit``) when threads outlive the reactor by ``grace`` seconds:
    the interpreter would wait for them at exit, forever for a pool's idle worker (a pool
    that work handed over during the shutdown started again), and a child must end when its
    master is gone or asks it to."""
    deadline = time.monotonic() + grace
    current = threading.current_thread()
    lingering = [t for t in threading.enumerate() if t is not current and not t.daemon]
    for thread in lingering:
        thread.join(max(0.0, deadline - time.monotonic()))
    names = [thread.name for thread in lingering if thread.is_alive()]
    if names:
        _log.warn("Threads still running after the reactor stopped: {names}; exiting", names=names)
        sys.stderr.flush()
        os._exit(0)
