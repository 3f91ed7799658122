"""Where blocking file work runs: a small thread pool, or inline on the calling thread.

Mailboxes hand their disk tasks to ``run()`` and await the Deferred; a per-mailbox lock
(the "lane") makes sure one task at a time touches a mailbox's files and index, so the
disk objects need no locks of their own.  Inline mode (``io-threads=0``) runs the task at
once and returns a fired Deferred: simpler to debug and test, at the price of blocking the
reactor for the duration of each fsync.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ParamSpec, Protocol, TypeVar

from twisted.internet import defer
from twisted.internet.defer import Deferred
from twisted.internet.threads import deferToThreadPool
from twisted.python.threadpool import ThreadPool

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
    """Runs tasks in a pool of ``threads`` threads, started and stopped with the backend."""

    def __init__(self, reactor: Any, threads: int, name: str = "maildir-io") -> None:
        self._reactor = reactor
        self._pool = ThreadPool(minthreads=0, maxthreads=threads, name=name)
        self._started = False

    def run(self, task: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> Deferred[T]:
        if not self._started:
            self.start()
        return deferToThreadPool(self._reactor, self._pool, task, *args, **kwargs)

    def start(self) -> None:
        if not self._started:
            self._pool.start()
            self._started = True

    def stop(self) -> None:
        if self._started:
            self._pool.stop()
            self._started = False
