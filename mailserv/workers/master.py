"""The master of ``--workers N``: holds the listening sockets, runs and restarts the children."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

from twisted.application.service import Service
from twisted.internet import error
from twisted.internet.defer import Deferred, DeferredList
from twisted.internet.interfaces import IDelayedCall, IListeningPort
from twisted.internet.protocol import ProcessProtocol
from twisted.logger import Logger, globalLogPublisher
from twisted.python.failure import Failure

from mailserv.config import Config
from mailserv.events.logs import event_from_line
from mailserv.workers.limits import SharedLimits
from mailserv.workers.wire import (
    CHANNEL_FD,
    FIRST_LISTENER_FD,
    Listener,
    encode_config,
    encode_listeners,
)

_log = Logger()

STOP_GRACE = 15.0
"""Seconds a child has to stop after SIGTERM before it is killed."""
QUICK_DEATH = 10.0
"""A child that dies within this many seconds of its start is restarted after a growing delay."""
MAX_DELAY = 30.0


class _Child(ProcessProtocol):
    """One child process: its log lines become ours; its end is reported to the pool."""

    def __init__(self, pool: WorkerPool, number: int) -> None:
        self.pool = pool
        self.number = number
        self.started = time.monotonic()
        self.ended: Deferred[None] = Deferred()
        self._pending = b""

    @property
    def pid(self) -> int | None:
        return None if self.transport is None else self.transport.pid

    def errReceived(self, data: bytes) -> None:
        *lines, self._pending = (self._pending + data).split(b"\n")
        for line in lines:
            event = event_from_line(line.decode("utf-8", "replace"))
            if event is not None:  # --log-format json: the child's event, as its own
                event.update(worker=self.number, worker_pid=self.pid)
                globalLogPublisher(event)
                continue
            _log.info(
                "worker {number} [{pid}] {line}",
                number=self.number,
                pid=self.pid,
                line=line.decode("utf-8", "replace"),
            )

    def processEnded(self, reason: Failure) -> None:
        self.ended.callback(None)
        self.pool.ended(self, reason)


class WorkerPool(Service):
    """``count`` children sharing the ``ports`` (bound, never accepting here), and the
    limits they share (``limits``)."""

    def __init__(
        self,
        config: Config,
        count: int,
        reactor: Any,
        held: Callable[[], Sequence[tuple[str, IListeningPort]]],
        announce: Callable[[str, IListeningPort], None],
    ) -> None:
        self._config = config
        self._count = count
        self._reactor = reactor
        self._held = held
        self._announce = announce
        self._ports: Sequence[tuple[str, IListeningPort]] = ()
        self._children: dict[int, _Child] = {}
        self._delays: dict[int, float] = {}
        self.limits = SharedLimits(config.settings, reactor)

    def startService(self) -> None:
        """Runs after the listeners' services: every port is bound by now."""
        super().startService()
        self._ports = self._held()
        for label, port in self._ports:
            self._announce(label, port)
        for number in range(1, self._count + 1):
            self._spawn(number)

    def _spawn(self, number: int) -> None:
        if not self.running:
            return
        channel = self.limits.connect(self._reactor, str(number))
        listeners, fds = [], {CHANNEL_FD: channel.fileno()}
        for child_fd, (label, port) in enumerate(self._ports, start=FIRST_LISTENER_FD):
            fds[child_fd] = port.fileno()  # type: ignore[attr-defined]
            listeners.append(Listener(child_fd, label))
        args = [sys.executable, "-m", "mailserv.workers", *encode_listeners(listeners)]
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
        child = _Child(self, number)
        try:
            process = self._reactor.spawnProcess(
                child, sys.executable, args, env=env, childFDs={0: "w", 1: "r", 2: "r", **fds}
            )
        finally:
            channel.close()  # the child has its copy
        # On stdin, not the command line: ``ps`` would show the backend's options to all.
        process.write(encode_config(self._config).encode("utf-8") + b"\n")
        self._children[number] = child
        _log.info("Started worker {number} [{pid}]", number=number, pid=child.pid)

    def ended(self, child: _Child, reason: Failure) -> None:
        if self._children.get(child.number) is not child:
            return
        del self._children[child.number]
        if not self.running:
            return
        lived = time.monotonic() - child.started
        delay = self._delays.get(child.number, 0.5)
        delay = min(MAX_DELAY, delay * 2) if lived < QUICK_DEATH else 0.5
        self._delays[child.number] = delay
        _log.warn(
            "Worker {number} exited ({why}) after {lived:.0f} s; restarting in {delay:.1f} s",
            number=child.number, why=reason.value, lived=lived, delay=delay,
        )  # fmt: skip
        self._reactor.callLater(delay, self._spawn, child.number)

    def pids(self) -> list[int]:
        return [pid for c in self._children.values() if (pid := c.pid) is not None]

    def stopService(self) -> Deferred[object]:
        super().stopService()
        waits = []
        for child in list(self._children.values()):
            _signal(child, "TERM")
            kill = self._reactor.callLater(STOP_GRACE, _signal, child, "KILL")
            child.ended.addCallback(_cancel, kill)
            waits.append(child.ended)
        return DeferredList(waits)  # type: ignore[return-value]


def _cancel(_: None, call: IDelayedCall) -> None:
    if call.active():
        call.cancel()


def _signal(child: _Child, name: str) -> None:
    try:
        if child.transport is not None:
            child.transport.signalProcess(name)
    except error.ProcessExitedAlready:
        pass
