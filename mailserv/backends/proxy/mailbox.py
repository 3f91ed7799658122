"""IMailbox over an upstream mailbox: a channel connection that keeps it selected.

While the mailbox is in use, one upstream connection (the channel) has it selected and
IDLEs on it between commands (NOOP polling when the upstream has no IDLE), so changes made
elsewhere arrive within moments.  Every command about the mailbox runs on the channel, one
at a time, so untagged responses come in order and keep the :class:`Mirror` exact: its UID
list is the channel's sequence map.  Changes this process makes are applied from the
upstream's own answers (FETCH after STORE, VANISHED/EXPUNGE after EXPUNGE, EXISTS after
APPEND) and reported to listeners with the caller's ``origin``.

Reading is local once the mailbox is live: ``uids``, ``status``, ``fetch`` of messages
already parsed, and cached ``content`` answer without a round trip.  A message is parsed
once, from its full text (``BODY.PEEK[]``), the first time FETCH needs it; the result is
cached per (UIDVALIDITY, UID) for the user, and messages that came in through mailserv
(APPEND, COPY) never need the download.  SEARCH goes upstream as ``UID SEARCH``, except
what the mirror already knows: flags, sizes, internal dates and UIDs, and the decoded
address and subject headers once every message is parsed.

A dropped channel is reopened and the mirror resynchronised against a fresh listing (the
difference reaches listeners as ordinary events); if that fails, listeners are told the
mailbox is lost.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

from twisted.internet.defer import Deferred, DeferredLock
from twisted.internet.interfaces import IDelayedCall
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from mailserv import errors
from mailserv.backends.kit import ListenerSet
from mailserv.backends.proxy import wire
from mailserv.backends.proxy.client import CommandFailed, UpstreamProtocol
from mailserv.backends.proxy.mirror import NO_INFO, Mirror
from mailserv.backends.proxy.search import answerable_here, translate
from mailserv.imap.search.evaluate import SearchContext, evaluate
from mailserv.interfaces import (
    RECENT,
    AppendResult,
    Changes,
    CopyResult,
    FlagChange,
    IMailbox,
    IMailboxListener,
    MailboxStatus,
    MessageMeta,
    StoreMode,
    StoreResult,
)
from mailserv.message.parse import parse_message
from mailserv.search import UNSEEN, SearchProgram
from mailserv.syntax import dates, encode
from mailserv.syntax.sequences import merge, uids_in

if TYPE_CHECKING:
    from mailserv.backends.proxy.user import UserState

_log = Logger()

T = TypeVar("T")


def _holds(uids: Sequence[int], uid: int) -> bool:
    """Whether ascending ``uids`` holds ``uid``."""
    i = bisect_left(uids, uid)
    return i < len(uids) and uids[i] == uid


async def _no_content(uid: int) -> bytes:
    """Metadata-only searches never load a message."""
    raise KeyError(uid)


_ROW_ITEMS = b"(UID FLAGS RFC822.SIZE INTERNALDATE)"
_ROW_ITEMS_MODSEQ = b"(UID FLAGS RFC822.SIZE INTERNALDATE MODSEQ)"
_DOWNLOAD_BYTES = 8 << 20
_DOWNLOAD_COUNT = 1000
_PREFETCH_BYTES = 4 << 20
_PREFETCH_COUNT = 200
_IDLE_REFRESH = 290.0
_IDLE_DELAY = 0.2
"""Quiet seconds before IDLE: a burst of commands pays no DONE round trip per command,
and news waiting upstream is announced when IDLE starts (a bounded extra delay)."""
_FRESH = 1.0
"""Seconds a STATUS answer from ``check()`` may stand in for ``status()``."""
_WAKE_DELAY = 0.01
_RECONNECT_DELAYS = (0.0, 0.5, 2.0)
_RECENT = RECENT.lower()
_MODES = {StoreMode.ADD: b"+FLAGS", StoreMode.REMOVE: b"-FLAGS", StoreMode.REPLACE: b"FLAGS"}

Row = tuple[int, frozenset[str], datetime, int, int | None]
"""(uid, flags, internal date, size, modseq) as the upstream lists a message."""


@implementer(IMailbox)
class ProxyMailbox:
    """Shared by every session of the user that opens ``name``."""

    def __init__(self, user: UserState, name: str) -> None:
        self.name = name
        self.user = user
        self.listeners = ListenerSet()
        self.mirror: Mirror | None = None
        self._conn: UpstreamProtocol | None = None
        self._lock = DeferredLock()
        self._starting: list[Deferred[None]] | None = None
        self._idle: Deferred[Any] | None = None
        self._idle_call: IDelayedCall | None = None
        self._refresh_call: IDelayedCall | None = None
        self._wake_call: IDelayedCall | None = None
        self._release_call: IDelayedCall | None = None
        self._fresh_status: tuple[MailboxStatus, float] | None = None
        self._catch_up_needed = False
        self._in_op = False
        self._op_origin: object = None
        self._op_scope: frozenset[int] | None = None
        self._op_expunge = False
        self._op_gone: list[int] = []
        self._op_changes: list[FlagChange] = []
        self._last_fetch: Sequence[int] = ()
        self._recent_content: dict[int, bytes] = {}

    @property
    def live(self) -> bool:
        conn = self._conn
        return conn is not None and conn.alive and self.mirror is not None

    @property
    def clock(self) -> Any:
        return self.user.clock

    # -- IMailbox: reading ----------------------------------------------------------------

    async def check(self) -> None:
        """Raise MailboxNotFound/MailboxNotSelectable now rather than on first use; the
        STATUS answer serves a ``status()`` that follows at once (the STATUS command)."""
        if not self.live:
            status = await self.user.status_of(self.name)
            self._fresh_status = (status, self.clock.seconds())

    async def status(self) -> MailboxStatus:
        if self.live:
            assert self.mirror is not None
            return self.mirror.status()
        fresh, self._fresh_status = self._fresh_status, None
        if fresh is not None and "STATUS=SIZE" in self.user.capabilities:
            status, when = fresh
            if self.clock.seconds() - when < _FRESH:
                return status
        await self._go_live()
        assert self.mirror is not None
        return self.mirror.status()

    async def uids(self) -> tuple[int, ...]:
        if not self.live:
            await self._go_live()
        assert self.mirror is not None
        return tuple(self.mirror.uids)

    async def fetch(self, uids: Sequence[int]) -> list[MessageMeta]:
        mirror = self.mirror
        if self.live and mirror is not None:
            self._last_fetch = uids
            if not mirror.missing_info(uids):
                return mirror.metas(uids)
        return await self._fetch(uids)

    async def _fetch(self, uids: Sequence[int]) -> list[MessageMeta]:
        await self._go_live()
        self._last_fetch = uids
        mirror = self.mirror
        assert mirror is not None
        missing = mirror.missing_info(uids)
        if missing:
            await self._parse_messages(missing)
        mirror = self.mirror
        assert mirror is not None
        return [meta for meta in mirror.metas(uids) if meta.info is not NO_INFO]

    async def content(self, uid: int) -> bytes:
        mirror = self.mirror
        if self.live and mirror is not None:
            data = self._recent_content.get(uid)
            if data is None:
                data = self.user.backend.content.get(self._content_key(mirror, uid))
            if data is not None:
                return data
        await self._go_live()
        mirror = self.mirror
        assert mirror is not None
        if uid not in mirror.meta:
            raise KeyError(uid)
        data = self.user.backend.content.get(self._content_key(mirror, uid))
        if data is not None:
            return data
        got = await self._download(self._prefetch(mirror, uid))
        if uid not in got:
            raise KeyError(uid)
        return got[uid]

    async def claim_recent(self) -> list[int]:
        if not self.live:
            await self._go_live()
        assert self.mirror is not None
        return self.mirror.claim_recent()

    async def search(self, query: SearchProgram, uids: Sequence[int]) -> list[int] | None:
        """``UID SEARCH`` upstream (ESEARCH when offered); None for untranslatable keys.

        Searches the mirror can answer (see ``answerable_here``) cost no round trip.
        """
        await self._go_live()
        assert self.mirror is not None
        mirror = self.mirror
        if query == UNSEEN:  # what clients ask on every sync: kept ready by the mirror
            unseen = sorted(mirror.unseen)
            if uids == mirror.uids:  # the session is up to date (one C-level comparison)
                return unseen
            return [uid for uid in unseen if _holds(uids, uid)]
        if answerable_here(query, parsed=False) or (
            answerable_here(query, parsed=True) and not mirror.missing_info(uids)
        ):
            context = SearchContext(mirror.uids, frozenset(), _no_content)
            return await evaluate(query, mirror.metas(uids), context)
        translated = translate(query, self.mirror.condstore)
        if translated is None:
            return None
        found: set[int] = set()
        ranges: list[tuple[int, int]] = []

        def handler(response: wire.Response) -> bool:
            if response.kind == "SEARCH":
                found.update(v for v in response.data if isinstance(v, int))
                return True
            if response.kind == "ESEARCH":
                data = response.data
                for i in range(len(data) - 1):
                    word = data[i]
                    if isinstance(word, str) and word.upper() == "ALL":
                        ranges.extend(wire.set_ranges(wire.to_text(data[i + 1])))
                return True
            return False

        async def ask(conn: UpstreamProtocol) -> bool:
            args: list[wire.Arg] = [b"UID SEARCH"]
            if "ESEARCH" in conn.capabilities:
                args += [b"RETURN", b"(ALL)"]
            if translated.utf8:
                args += [b"CHARSET", b"UTF-8"]
            try:
                await conn.command(*args, *translated.args, handler=handler)
            except CommandFailed as exc:
                _log.info("Upstream refused a search ({text}); searching here", text=str(exc))
                return False
            return True

        if not await self._run(ask):
            return None
        if ranges:  # ESEARCH: cut the matching runs out of the ascending UIDs
            return uids_in(merge(ranges), uids)
        return [uid for uid in uids if uid in found]

    async def changes_since(self, modseq: int) -> Changes:
        await self._go_live()
        assert self.mirror is not None
        changes = self.mirror.changes_since(modseq)
        changed = await self._fetch([m.uid for m in changes.changed])
        return Changes(changed, changes.vanished, changes.highestmodseq)

    # -- IMailbox: changing ---------------------------------------------------------------

    async def append(
        self, message: bytes, flags: frozenset[str], internaldate: datetime | None, origin: object
    ) -> AppendResult:
        self._fresh_status = None
        info = parse_message(message)
        args: list[wire.Arg] = [b"APPEND", self.user.encoded(self.name)]
        flags = frozenset(f for f in flags if f.lower() != _RECENT)
        if flags:
            args.append(encode.flag_list(flags))
        if internaldate is not None:
            args.append(dates.format_date_time(internaldate))
        args.append(wire.Literal(message))
        result: list[AppendResult] = []

        async def send(conn: UpstreamProtocol) -> None:
            try:
                response = await conn.command(*args)
            except CommandFailed as exc:
                raise await self.user.mailbox_error(self.name, exc) from exc
            if response.code == "APPENDUID" and len(response.code_data) >= 2:
                validity, uid = response.code_data[0], response.code_data[1]
                if isinstance(validity, int) and isinstance(uid, int):
                    self.user.remember(self.name, validity, [(uid, info)])
                    result.append(AppendResult(validity, uid))

        if self.live or self._starting is not None or self.listeners:
            await self._run(send, origin)  # the EXISTS comes back on the channel
        else:
            await self.user.run(send)
        if result:
            return result[0]
        await self._go_live()  # no UIDPLUS upstream: the newest message is ours
        assert self.mirror is not None
        return AppendResult(self.mirror.uidvalidity, self.mirror.last)

    async def store(
        self,
        uids: Sequence[int],
        mode: StoreMode,
        flags: frozenset[str],
        origin: object,
        unchangedsince: int | None = None,
    ) -> StoreResult:
        item = _MODES[mode]
        await self._go_live()
        mirror = self.mirror
        assert mirror is not None
        targets = [uid for uid in sorted(set(uids)) if uid in mirror.meta]
        failed: list[int] = []
        if unchangedsince is not None and not mirror.condstore:
            failed = [uid for uid in targets if mirror.meta[uid].modseq > unchangedsince]
            targets = [uid for uid in targets if mirror.meta[uid].modseq <= unchangedsince]
        if not targets:
            return StoreResult([], failed)
        flags = frozenset(f for f in flags if f.lower() != _RECENT)

        async def send(conn: UpstreamProtocol) -> list[FlagChange]:
            args: list[wire.Arg] = [b"UID STORE", wire.uid_set(targets)]
            if unchangedsince is not None and mirror.condstore:
                args.append(b"(UNCHANGEDSINCE %d)" % unchangedsince)
            args += [item, encode.flag_list(flags)]
            try:
                response = await conn.command(*args)
            except CommandFailed as exc:
                raise errors.BackendError(exc.response.text or "Upstream refused STORE") from exc
            if response.code == "MODIFIED" and response.code_data:
                failed.extend(wire.uid_ranges(wire.to_text(response.code_data[0])))
            return list(self._op_changes)

        changes = await self._run(send, origin, scope=frozenset(targets))
        return StoreResult(sorted(changes, key=lambda c: c.uid), sorted(set(failed)))

    async def copy(self, uids: Sequence[int], destination: str, origin: object) -> CopyResult:
        return await self._transfer(uids, destination, origin, move=False)

    async def move(self, uids: Sequence[int], destination: str, origin: object) -> CopyResult:
        return await self._transfer(uids, destination, origin, move=True)

    async def _transfer(
        self, uids: Sequence[int], destination: str, origin: object, move: bool
    ) -> CopyResult:
        try:
            self.user.names.upstream(destination)
        except errors.InvalidMailboxName as exc:  # the upstream can hold no such mailbox
            raise errors.MailboxNotFound(destination) from exc
        await self._go_live()
        mirror = self.mirror
        assert mirror is not None
        targets = [uid for uid in sorted(set(uids)) if uid in mirror.meta]
        target_box = self.user.mailboxes.get(destination)
        if target_box is not None:
            target_box._fresh_status = None
        if not targets:
            status = await self.user.status_of(destination)
            return CopyResult(status.uidvalidity, [])
        native_move = move and "MOVE" in self.user.capabilities
        copied: list[tuple[int, list[int], list[int]]] = []

        def copyuid(response: wire.Response) -> bool:
            if response.kind == "OK" and response.code == "COPYUID":
                _note_copyuid(response, copied)
                return True
            return False

        async def send(conn: UpstreamProtocol) -> None:
            verb = b"UID MOVE" if native_move else b"UID COPY"
            try:
                response = await conn.command(
                    verb, wire.uid_set(targets), self.user.encoded(destination), handler=copyuid
                )
            except CommandFailed as exc:
                raise await self.user.mailbox_error(destination, exc) from exc
            if response.code == "COPYUID":
                _note_copyuid(response, copied)
            if move and not native_move:
                await conn.command(
                    b"UID STORE", wire.uid_set(targets), b"+FLAGS.SILENT", b"(\\Deleted)"
                )
                await conn.command(b"UID EXPUNGE", wire.uid_set(targets))

        await self._run(send, origin, expunge=move)
        if not copied:
            status = await self.user.status_of(destination)
            return CopyResult(status.uidvalidity, [])
        validity, sources, copies = copied[0]
        pairs = list(zip(sources, copies, strict=False))
        known = [(copy, mirror.infos[source]) for source, copy in pairs if source in mirror.infos]
        self.user.remember(destination, validity, known)
        busy = target_box is not None and (target_box.live or target_box.listeners)
        if busy and target_box is not self:
            assert target_box is not None
            await target_box.sync(origin)
        return CopyResult(validity, sorted(pairs))

    async def expunge(self, uids: Sequence[int] | None, origin: object) -> list[int]:
        await self._go_live()
        mirror = self.mirror
        assert mirror is not None
        if uids is not None:
            targets = [uid for uid in sorted(set(uids)) if uid in mirror.meta]
            if not targets:
                return []
            if "UIDPLUS" not in self.user.capabilities:
                raise errors.BackendError("The upstream server cannot expunge single messages")

        async def send(conn: UpstreamProtocol) -> list[int]:
            if uids is None:
                await conn.command(b"EXPUNGE")
            else:
                await conn.command(b"UID EXPUNGE", wire.uid_set(targets))
            return list(self._op_gone)

        return sorted(await self._run(send, origin, expunge=True))

    async def sync(self, origin: object) -> None:
        """Take in what the upstream has to say now (after a COPY into this mailbox)."""

        async def noop(conn: UpstreamProtocol) -> None:
            await conn.command(b"NOOP")

        await self._run(noop, origin)

    def add_listener(self, listener: IMailboxListener) -> None:
        """A listener wants news: the mailbox goes live (selected upstream) if it is not."""
        self.listeners.add(listener)
        if self._release_call is not None and self._release_call.active():
            self._release_call.cancel()
        self._release_call = None
        if not self.live and self._starting is None:
            d = Deferred.fromCoroutine(self._go_live())
            d.addErrback(_log_background, self.name)

    def remove_listener(self, listener: IMailboxListener) -> None:
        self.listeners.remove(listener)
        waiting = self._release_call is not None and self._release_call.active()
        if not self.listeners and self._conn is not None and not waiting:
            self._release_call = self.clock.callLater(
                self.user.backend.config.linger, self._release_later
            )

    # -- the channel ----------------------------------------------------------------------

    async def _go_live(self) -> None:
        if self.live:
            return
        if self.user.closed:
            raise errors.BackendUnavailable("the upstream session ended")
        if self._starting is not None:
            waiter: Deferred[None] = Deferred()
            self._starting.append(waiter)
            await waiter
            return
        self._starting = []
        try:
            await self._start()
        except BaseException as exc:
            waiters, self._starting = self._starting, None
            for waiter in waiters:
                waiter.errback(Failure(exc))
            raise
        waiters, self._starting = self._starting, None
        for waiter in waiters:
            waiter.callback(None)

    async def _start(self) -> None:
        user = self.user
        conn = await user.acquire()
        try:
            state, rows = await self._select(conn)
        except BaseException:
            if conn.alive and conn.selected is None:
                user.release(conn)
            else:
                user.discard(conn)
            raise
        validity = state.get("UIDVALIDITY", 0)
        condstore = bool({"CONDSTORE", "QRESYNC"} & conn.enabled) and "NOMODSEQ" not in state
        old = self.mirror
        if old is not None and old.uidvalidity != validity:
            self._lost("the mailbox was recreated upstream (UIDVALIDITY changed)")
            old = None
        if old is None:
            listed = {row[0] for row in rows}
            mirror = Mirror(validity, condstore, user.load_infos(self.name, validity, listed))
            for uid, flags, date, size, modseq in rows:
                mirror.add(uid, flags, date, size, modseq, None, recent=RECENT in flags)
            mirror.discard_events()  # the initial listing is no news
        else:
            mirror = old
            _resync(mirror, rows)
        mirror.uidnext = max(mirror.uidnext, state.get("UIDNEXT", 1))
        if condstore and "HIGHESTMODSEQ" in state:
            mirror.note_highest(state["HIGHESTMODSEQ"])
        self.mirror = mirror
        self._conn = conn
        conn.on_untagged = self._on_untagged
        conn.on_lost = self._on_lost
        self._catch_up_needed = False
        if old is not None:
            mirror.emit(self, self.listeners)
        self._schedule_idle()

    async def _select(self, conn: UpstreamProtocol) -> tuple[dict[str, int], list[Row]]:
        state: dict[str, int] = {}

        def selecting(response: wire.Response) -> bool:
            kind = response.kind
            if kind == "EXISTS" and response.number is not None:
                state["EXISTS"] = response.number
            elif kind == "OK" and response.code is not None:
                value = response.code_data[0] if response.code_data else 0
                state[response.code] = value if isinstance(value, int) else 0
            return kind in ("EXISTS", "RECENT", "FLAGS", "OK", "VANISHED", "FETCH")

        try:
            await conn.command(b"SELECT", self.user.encoded(self.name), handler=selecting)
        except CommandFailed as exc:
            raise await self.user.mailbox_error(self.name, exc) from exc
        conn.selected = self.name
        rows: list[Row] = []
        if state.get("EXISTS"):
            modseq = bool({"CONDSTORE", "QRESYNC"} & conn.enabled)
            items = _ROW_ITEMS_MODSEQ if modseq and "NOMODSEQ" not in state else _ROW_ITEMS
            await conn.command(b"UID FETCH", b"1:*", items, handler=_row_collector(rows, 0))
        rows.sort()
        return state, rows

    async def _run(
        self,
        work: Callable[[UpstreamProtocol], Awaitable[T]],
        origin: object = None,
        scope: frozenset[int] | None = None,
        expunge: bool = False,
    ) -> T:
        """``work`` on the channel, alone; afterwards new messages are listed and every
        change it brought is told to the listeners."""
        await self._go_live()
        await self._lock.acquire()
        try:
            if not self.live:
                await self._go_live()
            conn = self._conn
            assert conn is not None
            await self._leave_idle()
            self._in_op = True
            self._op_origin, self._op_scope, self._op_expunge = origin, scope, expunge
            self._op_gone, self._op_changes = [], []
            try:
                result = await work(conn)
                await self._catch_up(conn, origin)
            finally:
                self._in_op = False
                self._op_origin, self._op_scope = None, None
                if self.mirror is not None:
                    self.mirror.emit(self, self.listeners)
            return result
        finally:
            self._lock.release()
            self._schedule_idle()

    async def _catch_up(self, conn: UpstreamProtocol, origin: object) -> None:
        """List the messages an EXISTS announced."""
        while self._catch_up_needed and self.mirror is not None:
            self._catch_up_needed = False
            mirror = self.mirror
            last = mirror.last
            rows: list[Row] = []
            items = _ROW_ITEMS_MODSEQ if mirror.condstore else _ROW_ITEMS
            await conn.command(
                b"UID FETCH", b"%d:*" % (last + 1), items, handler=_row_collector(rows, last)
            )
            for uid, flags, date, size, modseq in sorted(rows):
                mirror.add(uid, flags, date, size, modseq, origin)

    def _on_untagged(self, response: wire.Response) -> None:
        mirror = self.mirror
        if mirror is None:
            return
        kind = response.kind
        if kind == "FETCH":
            self._flags_update(mirror, response)
        elif kind == "EXPUNGE" and response.number is not None:
            uid = mirror.uid_at(response.number)
            if uid is not None:
                self._removed(mirror, [uid])
        elif kind == "VANISHED" and response.data:
            if not isinstance(response.data[0], list):  # (EARLIER) belongs to a resync
                try:
                    self._removed(mirror, wire.uid_ranges(wire.to_text(response.data[-1])))
                except ValueError:
                    _log.warn("Unparsable VANISHED from upstream")
        elif kind == "EXISTS" and response.number is not None:
            if response.number > len(mirror.uids):
                self._catch_up_needed = True
                if not self._in_op:
                    self._wake()
        elif kind == "OK" and response.code == "HIGHESTMODSEQ" and response.code_data:
            value = response.code_data[0]
            if isinstance(value, int):
                mirror.note_highest(value)
        elif kind == "OK" and response.code == "UIDVALIDITY" and response.code_data:
            changed = response.code_data[0] != mirror.uidvalidity
            if changed and self._conn is not None:
                self._conn.abort("UIDVALIDITY changed")
        if not self._in_op:
            mirror.emit(self, self.listeners)

    def _flags_update(self, mirror: Mirror, response: wire.Response) -> None:
        if not response.data or not isinstance(response.data[0], list):
            return
        items = wire.pairs(response.data[0])
        if "FLAGS" not in items:
            return
        uid = items.get("UID")
        if not isinstance(uid, int):
            uid = mirror.uid_at(response.number or 0)
            if uid is None:
                return
        scope = self._op_scope
        ours = self._in_op and scope is not None and uid in scope
        origin = self._op_origin if ours else None
        change = mirror.set_flags(
            uid, wire.flag_set(items["FLAGS"]), wire.modseq_of(items.get("MODSEQ")), origin
        )
        if change is not None and ours:
            self._op_changes.append(change)

    def _removed(self, mirror: Mirror, uids: Sequence[int]) -> None:
        origin = self._op_origin if self._in_op and self._op_expunge else None
        gone = mirror.remove(uids, origin)
        if self._in_op:
            self._op_gone.extend(gone)
        for uid in gone:
            self._recent_content.pop(uid, None)

    # -- IDLE -----------------------------------------------------------------------------

    def _schedule_idle(self) -> None:
        if self._idle is not None or not self.live or self.user.closed:
            return
        if self._idle_call is not None and self._idle_call.active():
            return
        self._idle_call = self.clock.callLater(_IDLE_DELAY, self._idle_soon)

    def _idle_soon(self) -> None:
        self._idle_call = None
        d = Deferred.fromCoroutine(self._enter_idle())
        d.addErrback(lambda f: _log.failure("Entering IDLE upstream failed", f))

    async def _enter_idle(self) -> None:
        conn = self._conn
        if self._lock.locked or not self.live or self._idle is not None or conn is None:
            return
        if "IDLE" not in conn.capabilities:
            self._wake(self.user.backend.config.poll)
            return
        await self._lock.acquire()
        try:
            if self._conn is not conn or not conn.alive or self._idle is not None:
                return
            try:
                done = await conn.start_idle()
            except CommandFailed:
                self._wake(self.user.backend.config.poll)
                return
            except errors.BackendUnavailable:
                return
            done.addErrback(lambda _: None)
            self._idle = done
            self._refresh_call = self.clock.callLater(_IDLE_REFRESH, self._wake, 0)
        finally:
            self._lock.release()

    async def _leave_idle(self) -> None:
        done, self._idle = self._idle, None
        if self._refresh_call is not None and self._refresh_call.active():
            self._refresh_call.cancel()
        self._refresh_call = None
        if done is None:
            return
        conn = self._conn
        if conn is not None and conn.alive:
            conn.done()
            await done
        if conn is None or not conn.alive:
            raise errors.BackendUnavailable("upstream connection lost")

    def _wake(self, delay: float = _WAKE_DELAY) -> None:
        """Run an empty command soon: it ends IDLE and lists what arrived (or polls)."""
        if self._wake_call is not None and self._wake_call.active():
            return

        def run() -> None:
            self._wake_call = None
            if not self.live:
                return

            async def nothing(conn: UpstreamProtocol) -> None:
                if not self._catch_up_needed:
                    await conn.command(b"NOOP")

            d = Deferred.fromCoroutine(self._run(nothing))
            d.addErrback(_log_background, self.name)

        self._wake_call = self.clock.callLater(delay, run)

    # -- losing and releasing the channel -------------------------------------------------

    def _on_lost(self, reason: str) -> None:
        conn, self._conn = self._conn, None
        self._idle = None
        if self.user.closed:
            return
        if conn is not None:
            self.user.discard(conn)
        _log.warn(
            "Upstream connection of {user}/{name} lost: {reason}",
            user=self.user.username,
            name=self.name,
            reason=reason,
        )
        if self.listeners:
            d = Deferred.fromCoroutine(self._reconnect(reason))
            d.addErrback(_log_background, self.name)
        else:
            self.mirror = None

    async def _reconnect(self, reason: str) -> None:
        for delay in _RECONNECT_DELAYS:
            if delay:
                await _sleep(self.clock, delay)
            if self.live or self.user.closed:
                return
            try:
                await self._go_live()
                return
            except (errors.MailboxNotFound, errors.MailboxNotSelectable):
                self._lost("the mailbox no longer exists upstream")
                return
            except errors.BackendError as exc:
                reason = str(exc)
        self._lost(f"upstream connection lost and not re-established: {reason}")

    def _lost(self, reason: str) -> None:
        """The mirror cannot be kept: tell every listener (their views are void, the clients
        get BYE); later commands get ``NO [UNAVAILABLE]`` until the mailbox can be reopened."""
        self.mirror = None
        if self.listeners:
            _log.warn(
                "Mailbox {name} of {user} lost: {reason}",
                name=self.name,
                user=self.user.username,
                reason=reason,
            )
        self.listeners.lost(self, reason)

    def evictable(self) -> bool:
        return self._conn is not None and not self.listeners and not self._lock.locked

    def _release_later(self) -> None:
        self._release_call = None
        if self.listeners:
            return
        d = Deferred.fromCoroutine(self.release_channel())
        d.addErrback(_log_background, self.name)

    async def release_channel(self) -> None:
        """Give the channel back to the pool (UNSELECT) and forget the mirror."""
        conn = self._conn
        if conn is None:
            return
        await self._lock.acquire()
        try:
            if self._conn is not conn:
                return
            try:
                await self._leave_idle()
            except errors.BackendError:
                pass
            self._conn = None
            self.mirror = None
            conn.on_lost = None
            conn.on_untagged = None
            if conn.alive and "UNSELECT" in conn.capabilities:
                try:
                    await conn.command(b"UNSELECT")
                    conn.selected = None
                    self.user.release(conn)
                    return
                except (CommandFailed, errors.BackendError):
                    pass
            self.user.discard(conn)
        finally:
            self._lock.release()

    async def shutdown(self) -> None:
        """The user's upstream session ends: log the channel out."""
        for call in (self._idle_call, self._refresh_call, self._wake_call, self._release_call):
            if call is not None and call.active():
                call.cancel()
        conn, self._conn = self._conn, None
        self.mirror = None
        if conn is not None:
            conn.on_lost = None
            conn.on_untagged = None
            if self._idle is not None and conn.alive:
                conn.done()
            conn.close()

    async def gone(self) -> None:
        """The mailbox was deleted or renamed: release it and tell its listeners."""
        mirror = self.mirror
        await self.release_channel()
        if mirror is not None and mirror.uids and self.listeners:
            mirror.remove(list(mirror.uids), None)
            mirror.emit(self, self.listeners)

    # -- downloads ------------------------------------------------------------------------

    def _content_key(self, mirror: Mirror, uid: int) -> tuple[str, str, int, int]:
        return (self.user.username, self.name, mirror.uidvalidity, uid)

    def _prefetch(self, mirror: Mirror, uid: int) -> list[int]:
        """``uid`` and the uncached ones after it in the last FETCH batch (bounded)."""
        batch = [uid]
        if self.user.backend.content.budget <= 0:
            return batch
        order = self._last_fetch
        try:
            start = list(order).index(uid) + 1
        except ValueError:
            return batch
        total = mirror.meta[uid].size
        cache = self.user.backend.content
        for other in order[start:]:
            meta = mirror.meta.get(other)
            if meta is None or self._content_key(mirror, other) in cache:
                continue
            total += meta.size
            if total > _PREFETCH_BYTES or len(batch) >= _PREFETCH_COUNT:
                break
            batch.append(other)
        return batch

    async def _parse_messages(self, uids: list[int]) -> None:
        """Download and parse messages whose MessageInfo is not known yet."""
        mirror = self.mirror
        assert mirror is not None
        chunk: list[int] = []
        total = 0
        for uid in uids:
            meta = mirror.meta.get(uid)
            if meta is None:
                continue
            chunk.append(uid)
            total += meta.size
            if total >= _DOWNLOAD_BYTES or len(chunk) >= _DOWNLOAD_COUNT:
                await self._download(chunk)
                chunk, total = [], 0
        if chunk:
            await self._download(chunk)

    async def _download(self, uids: list[int]) -> dict[int, bytes]:
        """``BODY.PEEK[]`` of ``uids``: parsed where unparsed, cached, and returned."""
        got: dict[int, bytes] = {}

        def collect(response: wire.Response) -> bool:
            if response.kind != "FETCH" or not response.data:
                return False
            items = response.data[0]
            if not isinstance(items, list):
                return False
            found = wire.pairs(items)
            body = found.get("BODY[]")
            uid = found.get("UID")
            if not isinstance(body, bytes) or not isinstance(uid, int):
                return False
            got[uid] = body
            return "FLAGS" not in found

        async def send(conn: UpstreamProtocol) -> None:
            await conn.command(
                b"UID FETCH", wire.uid_set(uids), b"(UID BODY.PEEK[])", handler=collect
            )

        await self._run(send)
        mirror = self.mirror
        if mirror is None:
            return got
        cache = self.user.backend.content
        self._recent_content = dict(got)
        parsed = []
        for uid, raw in got.items():
            if uid in mirror.meta and mirror.meta[uid].info is NO_INFO:
                info = parse_message(raw)
                mirror.set_info(uid, info)
                parsed.append((uid, info))
            cache.put(self._content_key(mirror, uid), raw)
        self.user.remember(self.name, mirror.uidvalidity, parsed)
        return got


def _row_collector(rows: list[Row], after: int) -> Callable[[wire.Response], bool]:
    """A FETCH handler that keeps (uid, flags, date, size, modseq) of UIDs above ``after``."""

    def collect(response: wire.Response) -> bool:
        if response.kind != "FETCH" or not response.data:
            return False
        items = response.data[0]
        if not isinstance(items, list):
            return False
        found = wire.pairs(items)
        uid = found.get("UID")
        size = found.get("RFC822.SIZE")
        if not isinstance(uid, int) or not isinstance(size, int) or uid <= after:
            return False
        date = wire.internaldate(found.get("INTERNALDATE"))
        if date is None:
            return False
        rows.append(
            (
                uid,
                wire.flag_set(found.get("FLAGS")),
                date,
                size,
                wire.modseq_of(found.get("MODSEQ")),
            )
        )
        return True

    return collect


def _resync(mirror: Mirror, rows: list[Row]) -> None:
    """Bring ``mirror`` in line with a fresh listing; the differences queue as events."""
    listed = {row[0]: row for row in rows}
    mirror.remove([uid for uid in mirror.uids if uid not in listed], None)
    for uid, flags, date, size, modseq in rows:
        if uid in mirror.meta:
            mirror.set_flags(uid, flags, modseq, None)
        else:
            mirror.add(uid, flags, date, size, modseq, None)


def _note_copyuid(response: wire.Response, into: list[tuple[int, list[int], list[int]]]) -> None:
    data = response.code_data
    if len(data) >= 3 and isinstance(data[0], int) and not into:
        try:
            into.append(
                (
                    data[0],
                    wire.uid_ranges(wire.to_text(data[1])),
                    wire.uid_ranges(wire.to_text(data[2])),
                )
            )
        except ValueError:
            _log.warn("Unparsable COPYUID from upstream")


async def _sleep(clock: Any, delay: float) -> None:
    d: Deferred[None] = Deferred()
    clock.callLater(delay, d.callback, None)
    await d


def _log_background(failure: Failure, name: str) -> None:
    if failure.check(errors.BackendError):
        _log.info("Upstream work on {name} failed: {why}", name=name, why=failure.getErrorMessage())
        return
    _log.failure("Upstream work on {name} failed", failure, name=name)
