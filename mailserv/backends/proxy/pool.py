"""One user's pool of logged-in upstream connections.

Connections are opened on demand up to ``limit``; a selected mailbox holds one for as long
as it is selected (its channel), the rest serve one command at a time (:meth:`run`).  When
every connection is busy, a caller waits, after asking ``evict`` to free the connection of
a mailbox nobody listens to.  Long work (a search upstream, which may read every message
of a big mailbox for seconds) holds at most ``limit - 2`` connections at once: one is left
for the commands every session waits on (STATUS, LIST, a mailbox's channel).  The first
connection also teaches the upstream's names (personal namespace prefix and delimiter).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, TypeVar

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.python.failure import Failure

from mailserv import errors
from mailserv.backends.proxy import wire
from mailserv.backends.proxy.client import CommandFailed, Handler, UpstreamProtocol
from mailserv.backends.proxy.connect import LoginRefused
from mailserv.backends.proxy.names import NameMap

if TYPE_CHECKING:
    from mailserv.backends.proxy.backend import ProxyBackend

T = TypeVar("T")


class ConnectionPool:
    """Connections logged in upstream as ``login_name``; ``evict`` frees a busy one."""

    def __init__(
        self,
        backend: ProxyBackend,
        login_name: str,
        secret: bytes,
        evict: Callable[[], Awaitable[bool]],
    ) -> None:
        self.backend = backend
        self.login_name = login_name
        self.secret = secret
        self.clock: IReactorTime = backend.reactor
        self.limit = backend.config.connections
        self.names = NameMap()
        self.capabilities: frozenset[str] = frozenset()
        self.closed = False
        """No connection is lent any more."""
        self._evict = evict
        self._named = False
        self._idle: list[UpstreamProtocol] = []
        self._count = 0
        self._waiters: deque[Deferred[None]] = deque()
        self._long: set[UpstreamProtocol] = set()
        """The connections lent for long work."""
        self._long_held = 0
        """Those, and the ones being opened for it."""
        self._long_waiters: deque[Deferred[None]] = deque()
        """Long work waiting for one of those to come back."""

    @property
    def long_limit(self) -> int:
        """How many connections long work may hold at once."""
        return max(1, self.limit - 2)

    async def close(self) -> None:
        """Log out the idle connections; waiters fail."""
        self.closed = True
        idle, self._idle = self._idle, []
        for conn in idle:
            await conn.logout()
        waiters = [*self._waiters, *self._long_waiters]
        self._waiters, self._long_waiters = deque(), deque()
        for waiter in waiters:
            waiter.errback(Failure(errors.BackendUnavailable("the upstream session ended")))

    def adopt(self, conn: UpstreamProtocol) -> None:
        """A connection the login check opened: keep it for this user's first command."""
        if self._count < self.limit and not self.closed:
            self._count += 1
            self.capabilities = conn.capabilities
            self.release(conn)
        else:
            Deferred.fromCoroutine(conn.logout())

    @property
    def available(self) -> bool:
        """A connection can be lent without waiting for one to come back (an idle one, or
        room for a new one)."""
        return not self.closed and (bool(self._idle) or self._count < self.limit)

    async def acquire(self, long: bool = False) -> UpstreamProtocol:
        """A logged-in connection with nothing selected, for the caller alone.  ``long``:
        for work that may take seconds, which waits while ``long_limit`` such hold one."""
        started = time.monotonic()
        while True:
            if self.closed:
                raise errors.BackendUnavailable("the upstream session ended")
            if long and self._long_held >= self.long_limit:
                await self._wait(self._long_waiters, started)
                continue
            if long:
                self._long_held += 1  # taken before ``_lend`` may wait for a new connection
            try:
                conn = await self._lend()
            except BaseException:
                self._end_long(long)
                raise
            if conn is None:
                self._end_long(long)
                if not await self._evict():
                    await self._wait(self._waiters, started)
                continue
            if long:
                self._long.add(conn)
            return conn

    async def _lend(self) -> UpstreamProtocol | None:
        """An idle connection, or a new one while there is room; None when neither."""
        while self._idle:
            conn = self._idle.pop()
            if conn.alive:
                conn.on_untagged = None
                conn.on_lost = None
                return await self._named_on(conn)
            self._count -= 1
        if self._count >= self.limit:
            return None
        self._count += 1
        try:
            conn = await self._open()
        except BaseException:
            self._count -= 1
            self._wake(self._waiters)
            raise
        return await self._named_on(conn)

    async def _wait(self, queue: deque[Deferred[None]], started: float) -> None:
        """Until woken from ``queue``; BackendUnavailable once the upstream timeout has
        passed since ``started``."""
        left = self.backend.config.upstream.timeout - (time.monotonic() - started)
        if left <= 0:
            raise errors.BackendUnavailable(
                f"all {self.limit} upstream connections of this user are busy"
            )
        waiter: Deferred[None] = Deferred()
        queue.append(waiter)
        waiter.addTimeout(left, self.clock)
        try:
            await waiter
        except Exception:
            if waiter in queue:
                queue.remove(waiter)

    async def _open(self) -> UpstreamProtocol:
        try:
            conn = await self.backend.connector.open_as(self.login_name, self.secret)
        except LoginRefused as exc:
            raise errors.BackendUnavailable(
                f"the upstream no longer accepts this user's credentials ({exc})"
            ) from exc
        self.capabilities = conn.capabilities
        return conn

    async def _named_on(self, conn: UpstreamProtocol) -> UpstreamProtocol:
        """``conn``, after learning the upstream's delimiter and prefix on it if nobody has
        yet (the first connection may be the one the login check adopted)."""
        if not self._named:
            try:
                names = await discover_names(conn)
            except BaseException:
                self.discard(conn)
                raise
            if not self._named:
                self.names = names
                self._named = True
        return conn

    async def naming(self) -> NameMap:
        """The upstream's names: learnt on a pooled connection the first time.  Every
        command that spells a mailbox name upstream waits for this first."""
        if not self._named:
            self.release(await self.acquire())
        return self.names

    def release(self, conn: UpstreamProtocol) -> None:
        """Give back a connection that has nothing selected."""
        conn.on_untagged = None
        conn.on_lost = None
        if not conn.alive or self.closed:
            self.discard(conn)
            return
        self._idle.append(conn)
        self._wake(self._waiters)
        self._back_from_long(conn)

    def discard(self, conn: UpstreamProtocol) -> None:
        """A connection that is dead or must go: it no longer counts."""
        self._count -= 1
        if conn.alive:
            Deferred.fromCoroutine(conn.logout())
        self._wake(self._waiters)
        self._back_from_long(conn)

    def _back_from_long(self, conn: UpstreamProtocol) -> None:
        """After the general waiters had their turn at ``conn``: long work may take one
        more connection."""
        if conn in self._long:
            self._long.discard(conn)
            self._end_long(True)

    def _end_long(self, long: bool) -> None:
        if long:
            self._long_held -= 1
            self._wake(self._long_waiters)

    @staticmethod
    def _wake(waiters: deque[Deferred[None]]) -> None:
        """Wake the first caller still waiting in ``waiters``."""
        while waiters:
            waiter = waiters.popleft()
            if not waiter.called:
                waiter.callback(None)
                return

    async def command(self, *args: wire.Arg, handler: Handler | None = None) -> wire.Response:
        """One command on a pooled connection."""
        return await self.run(lambda conn: conn.command(*args, handler=handler))

    async def run(self, work: Callable[[UpstreamProtocol], Awaitable[T]]) -> T:
        """``work`` on a pooled connection."""
        conn = await self.acquire()
        try:
            return await work(conn)
        finally:
            self.release(conn)


async def discover_names(conn: UpstreamProtocol) -> NameMap:
    """The personal namespace's prefix and delimiter (NAMESPACE, else ``LIST "" ""``)."""
    found: list[tuple[str, str | None]] = []

    def namespace(response: wire.Response) -> bool:
        if response.kind == "NAMESPACE" and response.data:
            personal = response.data[0]
            if isinstance(personal, list) and personal and isinstance(personal[0], list):
                first = personal[0]
                prefix = wire.to_text(first[0]) if first else ""
                delimiter = first[1] if len(first) > 1 else None
                found.append((prefix, wire.to_text(delimiter) if delimiter is not None else None))
            return True
        return False

    def listing(response: wire.Response) -> bool:
        if response.kind == "LIST" and len(response.data) >= 2:
            delimiter = response.data[1]
            found.append(("", wire.to_text(delimiter) if delimiter is not None else None))
            return True
        return False

    try:
        if "NAMESPACE" in conn.capabilities:
            await conn.command(b"NAMESPACE", handler=namespace)
        if not found:
            await conn.command(b"LIST", b'""', b'""', handler=listing)
    except CommandFailed:
        pass
    if not found:
        return NameMap()
    prefix, delimiter = found[0]
    return NameMap(delimiter or None, prefix)
