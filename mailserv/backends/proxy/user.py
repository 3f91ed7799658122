"""One user's upstream side, shared by every mailserv session of that user: a pool of
connections (``pool.py``), a registry of open mailboxes (``registry.py``), the parsed
message cache (``cache.py``), the questions about mailboxes that are not selected here
(STATUS, LIST, the meaning of an upstream NO), and the life cycle across the sessions.

When the last session ends the connections stay open for ``linger`` seconds, then
everything is logged out and forgotten.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from mailserv import errors
from mailserv.backends.proxy import wire
from mailserv.backends.proxy.cache import InfoCache
from mailserv.backends.proxy.client import CommandFailed, UpstreamProtocol
from mailserv.backends.proxy.namelock import NameLocks
from mailserv.backends.proxy.pool import ConnectionPool
from mailserv.backends.proxy.registry import MailboxRegistry
from mailserv.backends.proxy.rows import object_id
from mailserv.backends.proxy.userlock import UserFiles
from mailserv.interfaces import MailboxStatus

if TYPE_CHECKING:
    from mailserv.backends.proxy.backend import ProxyBackend

_log = Logger()


class UserState:
    def __init__(
        self, backend: ProxyBackend, username: str, login_name: str, secret: bytes
    ) -> None:
        self.backend = backend
        self.username = username
        self.clock: IReactorTime = backend.reactor
        self.registry = MailboxRegistry()
        self.pool = ConnectionPool(backend, login_name, secret, self.registry.evict)
        timeout, lock_dir = backend.config.upstream.timeout, backend.config.lock_dir
        files = None if lock_dir is None else UserFiles(lock_dir, username, self.clock, timeout)
        self.locks = NameLocks(self.clock, timeout, files)
        """No upstream connection opens a mailbox while another renames or deletes it."""
        self.infos = InfoCache(username, backend.infos)
        self.sessions = 0
        self._linger: IDelayedCall | None = None
        self._schedule_linger()

    @property
    def closed(self) -> bool:
        return self.pool.closed

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
        self.pool.closed = True  # nothing is lent from here on
        if self._linger is not None and self._linger.active():
            self._linger.cancel()
        await self.registry.shutdown()
        await self.pool.close()
        if self.locks.files is not None:
            self.locks.files.close()

    # -- mailbox-level questions ----------------------------------------------------------

    def encoded(self, name: str) -> wire.Arg:
        """``name`` as an upstream argument (after :meth:`naming`); InvalidMailboxName
        when the upstream cannot hold it."""
        return wire.string(self.pool.names.encode(name))

    async def status_of(self, name: str) -> MailboxStatus:
        """STATUS of a mailbox that is not selected here."""
        await self.pool.naming()
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
            if "OBJECTID" in caps:
                items.append(b"MAILBOXID")
            wanted = b"(" + b" ".join(items) + b")"
            await conn.command(b"STATUS", self.encoded(name), wanted, handler=handler)

        try:
            async with self.locks.opening(name):
                await self.pool.run(ask)
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
            mailboxid=object_id(found.get("MAILBOXID")),
        )

    async def listing(
        self, pattern: bytes = b"*", verb: bytes = b"LIST"
    ) -> dict[str, frozenset[str]]:
        """``LIST "" pattern`` (or ``LSUB``): our names and the upstream's attributes
        (case kept)."""
        found: dict[str, frozenset[str]] = {}
        names = await self.pool.naming()
        kind = verb.decode("ascii")

        def handler(response: wire.Response) -> bool:
            if response.kind != kind or len(response.data) < 3:
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

        await self.pool.command(verb, b'""', wire.string(pattern), handler=handler)
        return found

    async def usage(self) -> tuple[int, int]:
        """Octets and messages of every mailbox the upstream lists: one ``LIST ... RETURN
        (STATUS (MESSAGES SIZE))`` (RFC 5819; the upstream must have LIST-STATUS and
        STATUS=SIZE), not a STATUS of each.  No mailbox it lists is renamed or deleted
        meanwhile (see ``namelock``: each STATUS opens its mailbox upstream)."""
        listed = await self.listing()
        names = await self.pool.naming()
        totals = [0, 0]

        def handler(response: wire.Response) -> bool:
            if response.kind == "LIST":
                return True
            if response.kind != "STATUS" or len(response.data) < 2:
                return False
            raw, values = response.data[0], response.data[-1]
            if isinstance(raw, int):
                raw = str(raw)
            if isinstance(raw, (bytes, str)) and names.decode(raw) and isinstance(values, list):
                found = wire.pairs(values)
                for index, key in enumerate(("SIZE", "MESSAGES")):
                    value = found.get(key)
                    totals[index] += value if isinstance(value, int) else 0
            return True

        async with self.locks.opening(*listed):
            await self.pool.command(
                b"LIST", b'""', b'"*"', b"RETURN", b"(STATUS (MESSAGES SIZE))", handler=handler
            )
        return totals[0], totals[1]

    async def exists(self, name: str) -> bool:
        """Whether the upstream can open ``name`` (a STATUS it does not refuse)."""
        await self.pool.naming()
        try:
            async with self.locks.opening(name):
                await self.pool.command(b"STATUS", self.encoded(name), b"(MESSAGES)")
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
                found = await self.listing(self.pool.names.encode(name))
            except errors.BackendError:
                found = {}
            attrs = {a.lower() for a in found.get(name, frozenset())}
            if name in self.registry.hollow:
                attrs.add("\\noselect")
            if name not in found or "\\nonexistent" in attrs:
                if code == "CANNOT":
                    return errors.InvalidMailboxName(text)
                return errors.MailboxNotFound(name)
            if "\\noselect" in attrs:
                return errors.MailboxNotSelectable(name)
        return errors.BackendError(text)


_BY_CODE: dict[str, Callable[[str], errors.BackendError]] = {
    "ALREADYEXISTS": errors.MailboxExists,
    "OVERQUOTA": errors.QuotaExceeded,
    "TOOBIG": errors.MessageTooLarge,
    "LIMIT": errors.MessageTooLarge,
    "UNAVAILABLE": errors.BackendUnavailable,
    "SERVERBUG": errors.BackendUnavailable,
    "NOPERM": errors.ReadOnlyMailbox,
}


def _log_close_failure(failure: Failure, user: str) -> None:
    _log.failure("Closing the upstream session of {user} failed", failure, user=user)
