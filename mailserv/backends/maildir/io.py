"""Where blocking file work runs: a small thread pool, or inline on the calling thread.

Mailboxes hand their disk tasks to ``run()`` and await the Deferred; a per-mailbox lock
(the "lane") makes sure one task at a time touches a mailbox's files and index, so the
disk objects need no locks of their own.  Inline mode (``io-threads=0``) runs the task at
once and returns a fired Deferred: simpler to debug and test, at the price of blocking the
reactor for the duration of each fsync.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, ParamSpec, Protocol, TypeVar

from twisted.internet import defer
from twisted.internet.defer import Deferred
from twisted.internet.threads import deferToThreadPool
from twisted.python.threadpool import ThreadPool

from mailserv.errors import BackendUnavailable

INLINE_BUDGET = 0.004
"""Seconds of small reads the reactor thread does before it hands them to a thread."""
INLINE_READ = 256 * 1024
"""Messages up to this size may be read on the reactor thread (within the budget)."""

P = ParamSpec("P")
T = TypeVar("T")


class IORunner(Protocol):
    def run(self, task: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> Deferred[T]: ...

    def start(self) -> None: ...

    def stop(self) -> None: ...


class InlineIO:
    """Runs each task immediately."""

    def run(self, task: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> Deferred[T]:
        try:
            return defer.succeed(task(*args, **kwargs))
        except BaseException:
            return defer.fail()

    def start(self) -> None:
        """Nothing to start."""

    def stop(self) -> None:
        """Nothing to stop."""


class ThreadIO:
    """Runs tasks in a pool of ``threads`` threads, started and stopped with the backend.

    A task handed over once the pool has stopped fails with ``BackendUnavailable``: it must
    not start the pool again, whose threads nobody would stop (the process could not exit:
    a worker whose master was gone hung at exit, waiting for them)."""

    def __init__(self, reactor: Any, threads: int, name: str = "maildir-io") -> None:
        self._reactor = reactor
        self._pool = ThreadPool(minthreads=0, maxthreads=threads, name=name)
        self._started = False
        self._stopped = False

    def run(self, task: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> Deferred[T]:
        if self._stopped:
            return defer.fail(BackendUnavailable("the maildir store is stopping"))
        if not self._started:
            self.start()
        return deferToThreadPool(self._reactor, self._pool, task, *args, **kwargs)

    def start(self) -> None:
        if not self._started:
            self._pool.start()
            self._started, self._stopped = True, False

    def stop(self) -> None:
        self._stopped = True
        if self._started:
            self._pool.stop()
            self._started = False


class Turn:
    """Whether the reactor thread may do a little more blocking work right now: it may while
    less than ``budget`` seconds have passed since it last got control (the next reactor
    iteration after the first such work).  Small reads are then done on the spot, and a
    long run of them (a FETCH or a SEARCH over many messages) yields now and then."""

    def __init__(self, clock: Any, budget: float) -> None:
        self._clock = clock
        self._budget = budget
        self._since: float | None = None

    def allows(self) -> bool:
        now = time.monotonic()
        if self._since is None:
            self._since = now
            self._clock.callLater(0, self._regained)
            return True
        return now - self._since < self._budget

    def _regained(self) -> None:
        self._since = None
