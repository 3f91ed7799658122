"""IMailbox over an upstream mailbox: the facade the engine sees.

The work is shared with two helpers: the :class:`Channel` (``channel.py``) keeps the
mailbox selected upstream, runs every command about it one at a time (the STOREs and
NOOPs of many sessions waiting meanwhile go together, pipelined) and keeps the
:class:`Mirror` exact; :class:`Downloads` (``downloads.py``) fetches, parses and caches
message bytes.  Changes this process makes are applied from the upstream's own answers
(FETCH after STORE, VANISHED/EXPUNGE after EXPUNGE, EXISTS after APPEND) and reported to
listeners with the caller's ``origin``.

Reading is local once the mailbox is live: ``uids``, ``status``, ``fetch`` of messages
already parsed, and cached ``content`` answer without a round trip; messages that came in
through mailserv (APPEND, COPY) never need a download.  SEARCH goes upstream as
``UID SEARCH`` on a pooled connection that EXAMINEs the mailbox (a long search holds up
none of its sessions' STOREs), except what the mirror already knows: flags, sizes,
internal dates and UIDs, and the decoded address and subject headers once every message
is parsed (flags, days and the folded headers from sets and texts it keeps:
``kit.flagsets``, ``kit.fieldtexts``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

from twisted.internet.defer import Deferred
from twisted.logger import Logger
from zope.interface import implementer

from mailserv import errors
from mailserv.backends.kit import ListenerSet, flagsets
from mailserv.backends.proxy import wire
from mailserv.backends.proxy.channel import Channel, Operation
from mailserv.backends.proxy.client import CommandFailed, UpstreamProtocol
from mailserv.backends.proxy.downloads import Downloads
from mailserv.backends.proxy.mirror import NO_INFO, Mirror
from mailserv.backends.proxy.search import answerable_here, translate
from mailserv.interfaces import (
    RECENT,
    SEEN,
    AppendResult,
    Changes,
    CopyResult,
    IFirstUnseen,
    IMailboxListener,
    IRefreshMailbox,
    ISearchableMailbox,
    MailboxStatus,
    MessageMeta,
    NewMessage,
    StoreMode,
    StoreResult,
)
from mailserv.message.parse import parse_message
from mailserv.search import Contains, SearchProgram, walk
from mailserv.search.evaluate import SearchContext, evaluate
from mailserv.slicing import TimeSlices
from mailserv.syntax import dates, encode
from mailserv.syntax.sequences import merge, parse_sequence_set, uids_in

if TYPE_CHECKING:
    from mailserv.backends.proxy.user import UserState

_log = Logger()

T = TypeVar("T")


async def _no_content(uid: int) -> bytes:
    """Metadata-only searches never load a message."""
    raise KeyError(uid)


_FRESH = 1.0
"""Seconds a STATUS answer from ``check()`` may stand in for ``status()``."""
_RECENT = RECENT.lower()
_MODES = {StoreMode.ADD: b"+FLAGS", StoreMode.REMOVE: b"-FLAGS", StoreMode.REPLACE: b"FLAGS"}


@implementer(ISearchableMailbox, IRefreshMailbox, IFirstUnseen)
class ProxyMailbox:
    """Shared by every session of the user that opens ``name``."""

    def __init__(self, user: UserState, name: str) -> None:
        self.name = name
        self.user = user
        self.listeners = ListenerSet()
        self.channel = Channel(user, name, self, self.listeners)
        self.downloads = Downloads(user, name, self.channel)
        self._fresh_status: tuple[MailboxStatus, float] | None = None
        self._changes = 0
        """Counts ``forget_status`` calls: a STATUS answer that crossed one is not kept."""
        self._mailboxid: str | None = None
        """The upstream's MAILBOXID (RFC 8474), learnt by ``check()`` when it has OBJECTID."""
        self._found_at: float | None = None
        """When ``check()``'s STATUS last found the mailbox (None: not yet, or it went)."""
        self._refresh_waiters: list[Deferred[None]] | None = None
        """Callers of :meth:`refresh` sharing a NOOP not sent yet (None: none is waiting)."""

    @property
    def live(self) -> bool:
        return self.channel.live

    def forget_status(self) -> None:
        """The mailbox changed: a STATUS answer kept by ``check()`` no longer stands."""
        self._fresh_status = None
        self._changes += 1

    @property
    def mirror(self) -> Mirror | None:
        return self.channel.mirror

    @property
    def clock(self) -> Any:
        return self.user.clock

    # -- IMailbox: reading ----------------------------------------------------------------

    async def check(self) -> None:
        """Raise MailboxNotFound/MailboxNotSelectable now rather than on first use; the
        STATUS answer serves a ``status()`` that follows at once (the STATUS command).

        A mailbox found less than ``_FRESH`` seconds ago is not asked about again: a client
        that pipelines APPENDs (an upload by mbsync) opens it for each, and a STATUS round
        trip each held them to a third to a half of the rate.  Deleted upstream meanwhile,
        the command's own upstream command fails as it would have a moment after the check."""
        if not self.live:
            now = self.clock.seconds()
            if self._found_at is not None and now - self._found_at < _FRESH:
                return
            changes = self._changes
            status = await self.user.status_of(self.name)
            self._found_at = self.clock.seconds()
            if changes == self._changes:  # no APPEND or COPY here meanwhile
                self._fresh_status = (status, self._found_at)
            self._mailboxid = status.mailboxid or self._mailboxid

    async def status(self) -> MailboxStatus:
        """A live mailbox asks its channel for news first (:meth:`refresh`), then answers
        from the mirror: what another worker process, another client of the upstream or its
        delivery changed may not have come by IDLE yet (SELECT and STATUS read this).

        Its UIDNEXT is also the upstream's, asked before the news: a message stored and
        expunged elsewhere before the mirror heard of it left no trace in the mirror, yet a
        client may have seen its UID (through another worker).  Asked first, it is no
        promise about a message the news leaves out."""
        upstream = await self.user.status_of(self.name) if self.live else None
        await self.refresh()
        if self.live:
            assert self.mirror is not None
            counts = self.mirror.status()
            if upstream is not None and upstream.uidnext > counts.uidnext:
                counts = replace(counts, uidnext=upstream.uidnext)
            return self._with_id(counts)
        fresh, self._fresh_status = self._fresh_status, None
        if fresh is not None and "STATUS=SIZE" in self.user.pool.capabilities:
            status, when = fresh
            if self.clock.seconds() - when < _FRESH:
                return status
        return self._with_id((await self.channel.mirrored()).status())

    def _with_id(self, status: MailboxStatus) -> MailboxStatus:
        return status if self._mailboxid is None else replace(status, mailboxid=self._mailboxid)

    async def uids(self) -> tuple[int, ...]:
        return tuple((await self.channel.mirrored()).uids)

    async def fetch(self, uids: Sequence[int]) -> list[MessageMeta]:
        mirror = self.mirror
        if self.live and mirror is not None:
            self.downloads.last_fetch = uids
            if not mirror.missing_info(uids):
                return mirror.metas(uids)
        return await self._fetch(uids)

    async def _fetch(self, uids: Sequence[int]) -> list[MessageMeta]:
        mirror = await self.channel.mirrored()
        self.downloads.last_fetch = uids
        missing = mirror.missing_info(uids)
        if missing:
            await self.downloads.parse(missing)
        now = self.mirror
        assert now is not None
        return [meta for meta in now.metas(uids) if meta.info is not NO_INFO]

    async def content(self, uid: int) -> bytes:
        return await self.downloads.content(uid)

    async def first_unseen(self) -> int | None:
        """From the UIDs having \\Seen the mirror keeps: a pass in C that stops there."""
        mirror = await self.channel.mirrored()
        return flagsets.first_without(mirror.having, SEEN, mirror.meta)

    async def claim_recent(self) -> list[int]:
        return (await self.channel.mirrored()).claim_recent()

    async def search(self, query: SearchProgram, uids: Sequence[int]) -> list[int] | None:
        """``UID SEARCH`` upstream (ESEARCH when offered); None for untranslatable keys.

        Searches the mirror can answer (see ``answerable_here``) cost no round trip.
        """
        mirror = await self.channel.mirrored()
        slices = TimeSlices(self.user.backend.turns)
        if not mirror.unparsed or not any(isinstance(n, Contains) for n in walk(query.key)):
            # Flags, internal dates and the address/subject fields: from the sets and folded
            # texts the mirror keeps (every message's texts are known), no pass over metas.
            known = await mirror.fields.answer(query.key, uids, mirror.meta, slices)
            if known is not None and self.mirror is mirror:
                kept = flagsets.search(
                    query.key, uids, mirror.having, mirror.on_day, mirror.meta, known
                )
                if kept is not None:
                    return kept
        if answerable_here(query, parsed=False) or (
            answerable_here(query, parsed=True) and not mirror.missing_info(uids)
        ):
            context = SearchContext(mirror.uids, frozenset(), _no_content, slices.pause)
            return await evaluate(query, mirror.metas(uids), context)
        translated = translate(query, mirror.condstore)
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

        if self.user.pool.available:  # else every connection is some mailbox's channel
            if not await self._examined(mirror.uidvalidity, ask):
                return None
        elif not await self.channel.run(ask):
            return None
        if ranges:  # ESEARCH: cut the matching runs out of the ascending UIDs
            return uids_in(merge(ranges), uids)
        return [uid for uid in uids if uid in found]

    async def _examined(
        self, uidvalidity: int, work: Callable[[UpstreamProtocol], Awaitable[bool]]
    ) -> bool:
        """``work`` on a pooled connection that has the mailbox EXAMINEd, not on the
        channel: a search upstream may take seconds (TEXT over 100k messages without a
        full-text index), and the STOREs and NOOPs of the mailbox's sessions go on meanwhile.
        False when the mailbox was recreated upstream (another UIDVALIDITY).  (When every
        connection of the pool is some mailbox's channel, the search takes this one's.)"""
        pool = self.user.pool
        conn = await pool.acquire(long=True)  # a connection stays for STATUS and LIST
        validity: list[int] = []

        def state(response: wire.Response) -> bool:
            if response.kind == "OK" and response.code == "UIDVALIDITY" and response.code_data:
                value = response.code_data[0]
                if isinstance(value, int):
                    validity.append(value)
            return False

        clean = False
        try:
            async with self.user.locks.opening(self.name):  # not while it is renamed
                try:
                    await conn.command(b"EXAMINE", self.user.encoded(self.name), handler=state)
                except CommandFailed as exc:
                    clean = True
                    raise await self.user.mailbox_error(self.name, exc) from exc
            done = validity == [uidvalidity] and await work(conn)
            await conn.command(b"UNSELECT" if "UNSELECT" in conn.capabilities else b"CLOSE")
            clean = True  # read-only: CLOSE expunges nothing
            return done
        finally:
            if clean:
                pool.release(conn)
            else:
                pool.discard(conn)

    async def changes_since(self, modseq: int) -> Changes:
        changes = (await self.channel.mirrored()).changes_since(modseq)
        changed = await self._fetch([m.uid for m in changes.changed])
        return Changes(changed, changes.vanished, changes.highestmodseq, changes.complete)

    # -- IMailbox: changing ---------------------------------------------------------------

    async def append(
        self, message: bytes, flags: frozenset[str], internaldate: datetime | None, origin: object
    ) -> AppendResult:
        (result,) = await self.append_many([NewMessage(message, flags, internaldate)], origin)
        return result

    async def append_many(self, batch: Sequence[NewMessage], origin: object) -> list[AppendResult]:
        """One upstream APPEND of every message of ``batch`` (MULTIAPPEND upstream, which
        the account offers only then, for more than one: all stored or none)."""
        self.forget_status()
        slices = TimeSlices(self.user.backend.turns)  # a batch's parses: not in one turn
        infos = []
        for i, new in enumerate(batch):
            if i:
                await slices.pause()
            infos.append(parse_message(new.message))
        args: list[wire.Arg] = [b"APPEND", self.user.encoded(self.name)]
        for new in batch:
            flags = frozenset(f for f in new.flags if f.lower() != _RECENT)
            if flags:
                args.append(encode.flag_list(flags))
            if new.internaldate is not None:
                args.append(dates.format_date_time(new.internaldate))
            args.append(wire.Literal(new.message))
        result: list[AppendResult] = []

        async def send(conn: UpstreamProtocol) -> None:
            try:
                response = await conn.command(*args)
            except CommandFailed as exc:
                raise await self.user.mailbox_error(self.name, exc) from exc
            if response.code == "APPENDUID" and len(response.code_data) >= 2:
                validity = response.code_data[0]
                uids = _uid_list(response.code_data[1], len(batch))
                if isinstance(validity, int) and uids:
                    # Not kept: binary content (the upstream may re-encode it), and where the
                    # upstream has OBJECTID (its EMAILID and THREADID come with a download).
                    if "OBJECTID" not in conn.capabilities:
                        kept = zip(uids, infos, batch, strict=True)
                        self.user.infos.remember(
                            self.name,
                            validity,
                            [(uid, info) for uid, info, new in kept if b"\x00" not in new.message],
                        )
                    result.extend(AppendResult(validity, uid) for uid in uids)

        if self.channel.busy or self.listeners:
            await self.channel.run(send, Operation(origin))  # the EXISTS comes back on the channel
        else:
            async with self.user.locks.opening(self.name):  # not while it is renamed
                await self.user.pool.run(send)
            if self.channel.busy:  # selected meanwhile: it may not have heard of the message
                await self.sync(origin)
        self.forget_status()  # a STATUS that ran meanwhile may not count the message
        if result:
            return result
        mirror = await self.channel.mirrored()  # no UIDPLUS upstream: the newest are ours
        first = max(1, mirror.last - len(batch) + 1)
        return [AppendResult(mirror.uidvalidity, uid) for uid in range(first, first + len(batch))]

    async def store(
        self,
        uids: Sequence[int],
        mode: StoreMode,
        flags: frozenset[str],
        origin: object,
        unchangedsince: int | None = None,
    ) -> StoreResult:
        item = _MODES[mode]
        mirror = await self.channel.mirrored()
        targets = mirror.present(uids)
        failed: list[int] = []
        if unchangedsince is not None and not mirror.condstore:
            failed = [uid for uid in targets if mirror.meta[uid].modseq > unchangedsince]
            targets = [uid for uid in targets if mirror.meta[uid].modseq <= unchangedsince]
        if not targets:
            return StoreResult([], failed)
        flags = frozenset(f for f in flags if f.lower() != _RECENT)

        op = Operation(origin, scope=frozenset(targets))
        args: list[wire.Arg] = [b"UID STORE", wire.uid_set(targets)]
        if unchangedsince is not None and mirror.condstore:
            args.append(b"(UNCHANGEDSINCE %d)" % unchangedsince)
        args += [item, encode.flag_list(flags)]
        # Sent with the other sessions' STOREs queued meanwhile: one round trip for all.
        response = await self.channel.pipelined(args, op)
        if response.kind != "OK":
            raise errors.BackendError(response.text or "Upstream refused STORE")
        if response.code == "MODIFIED" and response.code_data:
            failed.extend(wire.uid_ranges(wire.to_text(response.code_data[0])))
        return StoreResult(sorted(op.changes, key=lambda c: c.uid), sorted(set(failed)))

    async def copy(self, uids: Sequence[int], destination: str, origin: object) -> CopyResult:
        return await self._transfer(uids, destination, origin, move=False)

    async def move(self, uids: Sequence[int], destination: str, origin: object) -> CopyResult:
        return await self._transfer(uids, destination, origin, move=True)

    async def _transfer(
        self, uids: Sequence[int], destination: str, origin: object, move: bool
    ) -> CopyResult:
        try:
            self.user.pool.names.upstream(destination)
        except errors.InvalidMailboxName as exc:  # the upstream can hold no such mailbox
            raise errors.MailboxNotFound(destination) from exc
        mirror = await self.channel.mirrored()
        targets = mirror.present(uids)
        target_box = self.user.registry.mailboxes.get(destination)
        if target_box is not None:
            target_box.forget_status()
        if not targets:
            status = await self.user.status_of(destination)
            return CopyResult(status.uidvalidity, [])
        native_move = move and "MOVE" in self.user.pool.capabilities
        copied: list[tuple[int, list[int], list[int]]] = []
        # A MOVE's own removals are the messages the upstream says it moved (its COPYUID
        # comes before them): the engine tells those.  Any other removal told meanwhile (a
        # message another client expunged, or one of the set it did not find) is news.
        op = Operation(origin, frozenset() if move else None, expunge=move)

        def note(response: wire.Response) -> None:
            _note_copyuid(response, copied)
            if move and copied:
                op.scope = frozenset(copied[0][1])

        def copyuid(response: wire.Response) -> bool:
            if response.kind == "OK" and response.code == "COPYUID":
                note(response)
                return True
            return False

        async def send(conn: UpstreamProtocol) -> None:
            verb = b"UID MOVE" if native_move else b"UID COPY"
            sending = targets
            while True:
                try:
                    response = await conn.command(
                        verb, wire.uid_set(sending), self.user.encoded(destination), handler=copyuid
                    )
                    break
                except CommandFailed as exc:
                    # Messages expunged elsewhere meanwhile (the refusal told so): the others
                    # are sent again, as a UID command of vanished messages is no error.
                    still = mirror.present(sending)
                    if len(still) == len(sending):
                        raise await self.user.mailbox_error(destination, exc) from exc
                    if not still:
                        return
                    sending = still
            if response.code == "COPYUID":
                note(response)
            if move and not native_move:
                await conn.command(
                    b"UID STORE", wire.uid_set(sending), b"+FLAGS.SILENT", b"(\\Deleted)"
                )
                await conn.command(b"UID EXPUNGE", wire.uid_set(sending))

        async with self.user.locks.opening(destination):  # not while it is renamed
            await self.channel.run(send, op)
        target_box = self.user.registry.mailboxes.get(destination)
        if target_box is not None:
            target_box.forget_status()  # opened meanwhile, its STATUS may not count these
        if not copied:
            status = await self.user.status_of(destination)
            return CopyResult(status.uidvalidity, [])
        validity, sources, copies = copied[0]
        pairs = list(zip(sources, copies, strict=False))
        known = [(copy, mirror.infos[source]) for source, copy in pairs if source in mirror.infos]
        self.user.infos.remember(destination, validity, known)
        busy = target_box is not None and (target_box.channel.busy or target_box.listeners)
        if busy and target_box is not self:
            assert target_box is not None
            await target_box.sync(origin)
        return CopyResult(validity, sorted(pairs))

    async def expunge(self, uids: Sequence[int] | None, origin: object) -> list[int]:
        mirror = await self.channel.mirrored()
        if uids is not None:
            targets = mirror.present(uids)
            if not targets:
                return []
            if "UIDPLUS" not in self.user.pool.capabilities:
                raise errors.BackendError("The upstream server cannot expunge single messages")

        op = Operation(origin, None if uids is None else frozenset(targets), expunge=True)

        async def send(conn: UpstreamProtocol) -> None:
            if uids is None:
                await conn.command(b"EXPUNGE")
            else:
                await conn.command(b"UID EXPUNGE", wire.uid_set(targets))

        await self.channel.run(send, op)
        return sorted(op.gone)

    async def refresh(self) -> None:
        """``IRefreshMailbox`` (NOOP, CHECK; SELECT and STATUS through :meth:`status`):
        news from upstream now, not when its IDLE tells (another worker's changes, another
        client's, deliveries).

        Callers share a NOOP that waits for the channel and has not gone upstream yet: it
        tells each of them all that was done before they asked.  (Sessions that SELECT at
        once, as every client does after a reconnection, queue one NOOP, not one each.)"""
        if not self.live:
            return
        waiters = self._refresh_waiters
        if waiters is not None:
            waiter: Deferred[None] = Deferred()
            waiters.append(waiter)
            await waiter
            return
        self._refresh_waiters = waiters = []

        def sending() -> None:  # from now on a new caller needs a NOOP of its own
            if self._refresh_waiters is waiters:
                self._refresh_waiters = None

        try:  # sent with the STOREs waiting for the channel, if any (Channel.pipelined)
            answer = await self.channel.pipelined([b"NOOP"], Operation(scope=frozenset()), sending)
            if answer.kind != "OK":
                _log.info("No news of {name}: {why}", name=self.name, why=answer.text)
        except errors.BackendError as exc:
            _log.info("No news of {name}: {why}", name=self.name, why=exc)
        finally:
            sending()
            for waiter in waiters:
                waiter.callback(None)

    async def sync(self, origin: object) -> None:
        """Take in what the upstream has to say now, after an APPEND or COPY into this
        mailbox by ``origin`` (the messages listed are its own).  A failure (the mailbox
        deleted meanwhile, the upstream gone) is logged: the command that asked has done its
        work, and the mirror stays as it is."""

        async def noop(conn: UpstreamProtocol) -> None:
            await conn.command(b"NOOP")

        try:
            await self.channel.run(noop, Operation(origin))
        except errors.BackendError as exc:
            _log.info("No news of {name}: {why}", name=self.name, why=exc)

    def add_listener(self, listener: IMailboxListener) -> None:
        """A listener wants news: the mailbox goes live (selected upstream) if it is not."""
        self.listeners.add(listener)
        self.channel.keep()

    def remove_listener(self, listener: IMailboxListener) -> None:
        self.listeners.remove(listener)
        self.channel.release_soon()

    # -- the channel's life, for the account and the user's registry ----------------------

    def evictable(self) -> bool:
        return self.channel.evictable()

    async def release_channel(self) -> None:
        """Give the channel back to the pool (UNSELECT) and forget the mirror."""
        await self.channel.release()

    async def shutdown(self) -> None:
        """The user's upstream session ends: log the channel out."""
        await self.channel.shutdown()

    async def gone(self, retire: bool = False) -> None:
        """The mailbox was deleted or renamed: release it and tell its listeners.
        ``retire``: by us, so this object does not select the name again (a session
        still holding it gets MailboxNotFound; one opening the name gets a new object)."""
        self._found_at = None
        if retire:
            self.channel.retired = True
        await self.channel.gone()


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


def _uid_list(value: object, count: int) -> list[int]:
    """The ``count`` UIDs of an APPENDUID's set (``7``, ``7:9,12``); empty when it is not
    a set of that many."""
    if isinstance(value, int):
        return [value] if count == 1 else []
    if not isinstance(value, str):
        return []
    try:
        ranges = [(min(pair), max(pair)) for pair in parse_sequence_set(value).ranges]
    except ValueError:
        return []
    if sum(high - low + 1 for low, high in ranges) != count:
        return []
    return [uid for low, high in ranges for uid in range(low, high + 1)]
