"""One user's upstream side: a bounded pool of logged-in connections, shared mailboxes,
the parsed-message cache, and the life cycle across that user's mailserv sessions.

Every session of the user shares this object, so the sessions see each other's changes at
once (through the shared :class:`ProxyMailbox` objects) while the upstream's own
notifications bring in changes made elsewhere.  Connections are opened on demand up to
``connections``; a selected mailbox holds one for as long as it is selected (its channel),
the rest serve one command at a time.  When the last session ends the connections stay
open for ``linger`` seconds, then everything is logged out and forgotten.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Awaitable, Callable, Container
from typing import TYPE_CHECKING, TypeVar

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from mailserv import errors
from mailserv.backends.proxy import wire
from mailserv.backends.proxy.client import CommandFailed, UpstreamProtocol
from mailserv.backends.proxy.connect import LoginRefused, login
from mailserv.backends.proxy.names import NameMap
from mailserv.interfaces import MailboxStatus
from mailserv.message.info import MessageInfo

if TYPE_CHECKING:
    from mailserv.backends.proxy.backend import ProxyBackend
    from mailserv.backends.proxy.mailbox import ProxyMailbox

_log = Logger()

T = TypeVar("T")


class UserState:
    def __init__(
        self, backend: ProxyBackend, username: str, login_name: str, secret: bytes
    ) -> None:
        self.backend = backend
        self.username = username
        self.login_name = login_name
        self.secret = secret
        self.clock: IReactorTime = backend.reactor
        self.limit = backend.config.connections
        self.mailboxes: dict[str, ProxyMailbox] = {}
        self.infos: dict[tuple[str, int], dict[int, MessageInfo]] = {}
        self.special_use: dict[str, str] = {}
        self.subscribed: set[str] = set()
        self.hollow: set[str] = set()
        """Names deleted through us that the upstream may go on listing as if they still
        existed (Dovecot's Maildir++ keeps a deleted parent of a child in its list index,
        without \\Noselect): a LIST checks them (see :meth:`exists`)."""
        self.names = NameMap()
        self.capabilities: frozenset[str] = frozenset()
        self.sessions = 0
        self.closed = False
        self._named = False
        self._idle: list[UpstreamProtocol] = []
        self._count = 0
        self._waiters: deque[Deferred[None]] = deque()
        self._linger: IDelayedCall | None = None
        self._schedule_linger()

    # -- sessions -------------------------------------------------------------------------

    def session_started(self) -> None:
        self.sessions += 1
        if self._linger is not None and self._linger.active():
            self._linger.cancel()
        self._linger = None

    def session_ended(self) -> None:
        self.sessions = max(0, self.sessions - 1)
        if self.sessions == 0:
            self._schedule_linger()

    def _schedule_linger(self) -> None:
        if self._linger is None or not self._linger.active():
            self._linger = self.clock.callLater(self.backend.config.linger, self._expire)

    def _expire(self) -> None:
        self._linger = None
        if self.sessions == 0:
            self.backend.forget(self)
            d = Deferred.fromCoroutine(self.close())
            d.addErrback(_log_close_failure, self.username)

    async def close(self) -> None:
        """Log out everything; the object is dead afterwards."""
        self.closed = True
        if self._linger is not None and self._linger.active():
            self._linger.cancel()
        for mailbox in list(self.mailboxes.values()):
            await mailbox.shutdown()
        self.mailboxes.clear()
        idle, self._idle = self._idle, []
        for conn in idle:
            await conn.logout()
        waiters, self._waiters = self._waiters, deque()
        for waiter in waiters:
            waiter.errback(Failure(errors.BackendUnavailable("the upstream session ended")))

    # -- connections ----------------------------------------------------------------------

    def adopt(self, conn: UpstreamProtocol) -> None:
        """A connection the login check opened: keep it for this user's first command."""
        if self._count < self.limit and not self.closed:
            self._count += 1
            self.capabilities = conn.capabilities
            self.release(conn)
        else:
            Deferred.fromCoroutine(conn.logout())

    async def acquire(self) -> UpstreamProtocol:
        """A logged-in connection with nothing selected, for the caller alone."""
        started = time.monotonic()
        timeout = self.backend.config.upstream.timeout
        while True:
            if self.closed:
                raise errors.BackendUnavailable("the upstream session ended")
            while self._idle:
                conn = self._idle.pop()
                if conn.alive:
                    conn.on_untagged = None
                    conn.on_lost = None
                    return await self._named_on(conn)
                self._count -= 1
            if self._count < self.limit:
                self._count += 1
                try:
                    conn = await self._open()
                except BaseException:
                    self._count -= 1
                    self._wake()
                    raise
                return await self._named_on(conn)
            if await self._evict():
                continue
            left = timeout - (time.monotonic() - started)
            if left <= 0:
                raise errors.BackendUnavailable(
                    f"all {self.limit} upstream connections of this user are busy"
                )
            waiter: Deferred[None] = Deferred()
            self._waiters.append(waiter)
            waiter.addTimeout(left, self.clock)
            try:
                await waiter
            except Exception:
                if waiter in self._waiters:
                    self._waiters.remove(waiter)

    async def _open(self) -> UpstreamProtocol:
        conn = await self.backend.connector.open()
        try:
            await login(conn, self.login_name, self.secret)
        except LoginRefused as exc:
            conn.abort("login refused")
            raise errors.BackendUnavailable(
                f"the upstream no longer accepts this user's credentials ({exc})"
            ) from exc
        except BaseException:
            conn.abort("setup failed")
            raise
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

    async def _evict(self) -> bool:
        """Free the connection of a selected mailbox nobody listens to; True if one was."""
        for mailbox in list(self.mailboxes.values()):
            if mailbox.evictable():
                await mailbox.release_channel()
                return True
        return False

    def release(self, conn: UpstreamProtocol) -> None:
        """Give back a connection that has nothing selected."""
        conn.on_untagged = None
        conn.on_lost = None
        if not conn.alive or self.closed:
            self.discard(conn)
            return
        self._idle.append(conn)
        self._wake()

    def discard(self, conn: UpstreamProtocol) -> None:
        """A connection that is dead or must go: it no longer counts."""
        self._count -= 1
        if conn.alive:
            Deferred.fromCoroutine(conn.logout())
        self._wake()

    def _wake(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.called:
                waiter.callback(None)
                return

    async def run(self, work: Callable[[UpstreamProtocol], Awaitable[T]]) -> T:
        """``work`` on a pooled connection."""
        conn = await self.acquire()
        try:
            return await work(conn)
        finally:
            self.release(conn)

    # -- mailbox-level questions ----------------------------------------------------------

    def encoded(self, name: str) -> wire.Arg:
        """``name`` as an upstream argument (after :meth:`naming`); InvalidMailboxName
        when the upstream cannot hold it."""
        return wire.string(self.names.encode(name))

    async def status_of(self, name: str) -> MailboxStatus:
        """STATUS of a mailbox that is not selected here."""
        await self.naming()
        found: dict[str, object] = {}
        condstore = False

        def handler(response: wire.Response) -> bool:
            if response.kind != "STATUS" or len(response.data) < 2:
                return False
            values = response.data[-1]
            if isinstance(values, list):
                found.update(wire.pairs(values))
            return True

        async def ask(conn: UpstreamProtocol) -> None:
            nonlocal condstore
            caps = conn.capabilities
            items = [b"MESSAGES", b"UIDNEXT", b"UIDVALIDITY", b"UNSEEN", b"RECENT"]
            condstore = "CONDSTORE" in caps or "QRESYNC" in caps
            if condstore:
                items.append(b"HIGHESTMODSEQ")
            if "STATUS=SIZE" in caps:
                items.append(b"SIZE")
            wanted = b"(" + b" ".join(items) + b")"
            await conn.command(b"STATUS", self.encoded(name), wanted, handler=handler)

        try:
            await self.run(ask)
        except CommandFailed as exc:
            raise await self.mailbox_error(name, exc) from exc

        def number(key: str, default: int = 0) -> int:
            value = found.get(key, default)
            return value if isinstance(value, int) else default

        return MailboxStatus(
            uidvalidity=number("UIDVALIDITY"),
            uidnext=number("UIDNEXT", 1),
            messages=number("MESSAGES"),
            unseen=number("UNSEEN"),
            recent=number("RECENT"),
            highestmodseq=number("HIGHESTMODSEQ", 1) if condstore else int(time.time() * 1000),
            size=number("SIZE"),
        )

    async def listing(self, pattern: bytes = b"*") -> dict[str, frozenset[str]]:
        """``LIST "" pattern``: our names and the upstream's attributes (case kept)."""
        found: dict[str, frozenset[str]] = {}
        names = await self.naming()

        def handler(response: wire.Response) -> bool:
            if response.kind != "LIST" or len(response.data) < 3:
                return False
            attrs, _delimiter, raw = response.data[0], response.data[1], response.data[2]
            if isinstance(raw, int):
                raw = str(raw)
            if not isinstance(raw, (bytes, str)):
                return True
            name = names.decode(raw)
            if name:
                found[name] = wire.flag_set(attrs)
            return True

        async def ask(conn: UpstreamProtocol) -> None:
            await conn.command(b"LIST", b'""', wire.string(pattern), handler=handler)

        await self.run(ask)
        return found

    async def exists(self, name: str) -> bool:
        """Whether the upstream can open ``name`` (a STATUS it does not refuse)."""

        async def ask(conn: UpstreamProtocol) -> None:
            await conn.command(b"STATUS", self.encoded(name), b"(MESSAGES)")

        try:
            await self.run(ask)
        except CommandFailed:
            return False
        return True

    async def mailbox_error(self, name: str, failure: CommandFailed) -> errors.BackendError:
        """The backend error for an upstream NO about mailbox ``name``."""
        response = failure.response
        code = response.code
        text = response.text or "Upstream refused"
        mapped = _BY_CODE.get(code or "")
        if mapped is not None:
            return mapped(text)
        if code in (None, "NONEXISTENT", "TRYCREATE", "CANNOT"):
            try:
                found = await self.listing(self.names.encode(name))
            except errors.BackendError:
                found = {}
            attrs = {a.lower() for a in found.get(name, frozenset())}
            if name in self.hollow:
                attrs.add("\\noselect")
            if name not in found or "\\nonexistent" in attrs:
                if code == "CANNOT":
                    return errors.InvalidMailboxName(text)
                return errors.MailboxNotFound(name)
            if "\\noselect" in attrs:
                return errors.MailboxNotSelectable(name)
        return errors.BackendError(text)

    def infos_for(self, name: str, uidvalidity: int) -> dict[int, MessageInfo]:
        return self.infos.setdefault((name, uidvalidity), {})

    def load_infos(
        self, name: str, uidvalidity: int, uids: Container[int]
    ) -> dict[int, MessageInfo]:
        """The in-memory cache of a mailbox, completed from disk for ``uids``."""
        known = self.infos_for(name, uidvalidity)
        disk = self.backend.infos
        if disk is not None:
            for uid, info in disk.load(self.username, name, uidvalidity, uids).items():
                known.setdefault(uid, info)
        return known

    def remember(self, name: str, uidvalidity: int, items: list[tuple[int, MessageInfo]]) -> None:
        """Parsed messages: kept in memory and written to the disk cache."""
        known = self.infos_for(name, uidvalidity)
        known.update(items)
        disk = self.backend.infos
        if disk is not None:
            disk.save(self.username, name, uidvalidity, items)


_BY_CODE: dict[str, Callable[[str], errors.BackendError]] = {
    "ALREADYEXISTS": errors.MailboxExists,
    "OVERQUOTA": errors.QuotaExceeded,
    "TOOBIG": errors.MessageTooLarge,
    "LIMIT": errors.MessageTooLarge,
    "UNAVAILABLE": errors.BackendUnavailable,
    "SERVERBUG": errors.BackendUnavailable,
    "NOPERM": errors.ReadOnlyMailbox,
}


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


def _log_close_failure(failure: Failure, user: str) -> None:
    _log.failure("Closing the upstream session of {user} failed", failure, user=user)
