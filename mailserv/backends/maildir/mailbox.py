"""One maildir mailbox as the sessions of this process share it.

The reactor thread keeps the mailbox's state in memory (``state``: an ``Entry`` per
message, counts) with its listeners, and answers reads from it.  Disk work runs as tasks of
the mailbox's *lane*: a DeferredLock held from before the task until its ``Delta`` has been
applied and the listeners told, so tasks never overlap and events keep the order of the
changes.

Changes by other programs arrive from the watcher as file events.  They are queued
(``pending``) and compared with the state inside the lane, where the echoes of our own
renames are recognised and dropped; the others become "hints" that a scan task looks at
shortly after (``DEBOUNCE``), or before the next command that reports state, whichever
comes first.  The full-text rows are kept up by ``texts``.

The ``IMailbox`` methods are coroutines, as the interface's ``Awaitable`` types allow.
"""

from __future__ import annotations

import os
from bisect import bisect_left
from collections import ChainMap
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager, contextmanager, nullcontext
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar, cast

from twisted.internet.defer import Deferred, DeferredList, DeferredLock, DeferredSemaphore
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from mailserv.backends.kit import Listened, ListenerSet, expungeable
from mailserv.backends.maildir.disk import MailboxDisk
from mailserv.backends.maildir.files import MailboxGone
from mailserv.backends.maildir.infos import flag_metas, load_infos, metas
from mailserv.backends.maildir.infos import sort_keys as infos_sort_keys
from mailserv.backends.maildir.io import INLINE_READ
from mailserv.backends.maildir.pending import PendingEvents
from mailserv.backends.maildir.records import Delta, Entry, Prepared, Snapshot, Source
from mailserv.backends.maildir.renamer import LAZY_STORE, Renamer
from mailserv.backends.maildir.search import needs_texts
from mailserv.backends.maildir.state import Applied, MailboxState, uncollected
from mailserv.backends.maildir.texts import TextUpkeep
from mailserv.collector import keep_out_of_sight
from mailserv.errors import MailboxNotFound
from mailserv.interfaces import (
    DELETED,
    RECENT,
    AppendResult,
    Changes,
    CopyResult,
    FlagChange,
    IDeletedUsage,
    IFirstUnseen,
    IFlagsMailbox,
    ISearchableMailbox,
    ISharedMailbox,
    ISortKeysMailbox,
    MailboxStatus,
    MessageMeta,
    Narrowed,
    NewMessage,
    SortKeys,
    StoreMode,
    StoreResult,
)
from mailserv.message.info import MessageInfo
from mailserv.search import SearchProgram
from mailserv.slicing import TimeSlices

if TYPE_CHECKING:
    from mailserv.backends.maildir.account import MaildirAccount

_log = Logger()

FILL_SORTING = 2000
"""Rows given their ``sorting`` value in one transaction (``sort_keys``)."""

DEBOUNCE = 0.005
"""Seconds to gather a burst of file events into one scan."""
SYNC_ROUNDS = 3
QUIET_THRESHOLD = 500
"""Own changes from which watching is paused and the mailbox rescanned afterwards."""
INLINE_INFOS = 64
"""Infos of up to this many messages are read on the reactor thread; more in a thread."""
INLINE_METAS = 5000
"""Results of up to this many messages are built on the reactor thread (a few ms; FETCH
asks in batches of this size); more in a thread (the engine's own SEARCH asks for all)."""
INLINE_PLAN = 1000
"""STOREs of more messages than this are planned in a thread."""
FREEZE_LOADED = 10_000
"""Messages from which a mailbox's loaded state leaves the collector's sight at once."""
INLINE_STORE = 16
"""STOREs changing up to this many messages rename their files and write the index on the
reactor thread, when that waits for nothing (``MailboxDisk.set_flags_now``): a file rename
and a commit without flush take some tens of microseconds, a thread's hand-off more, and
more still while other sessions keep the reactor busy (a one-message STORE of the mixed
bench at 20k: p50 5.1-5.3 ms in a thread, 3.3 ms here)."""
PREPARE_AHEAD = 2
"""Messages of one batch (a MULTIAPPEND, a pipelined burst of APPENDs) written to ``tmp/``
at once: one's parse overlaps another's fsync, and the other I/O threads stay free for
other sessions."""

T = TypeVar("T")


@implementer(
    ISearchableMailbox,
    ISharedMailbox,
    IDeletedUsage,
    IFirstUnseen,
    IFlagsMailbox,
    ISortKeysMailbox,
)
class MaildirMailbox(Listened):
    def __init__(self, account: MaildirAccount, name: str, directory: str) -> None:
        self.name = name
        self._account = account
        self._services = account.services
        self.disk = self._new_disk(directory)
        self.lane = DeferredLock()
        self._state = MailboxState()
        self._loaded = False
        self.closed = False
        self.listeners = ListenerSet()
        self._pending = PendingEvents()
        self._scheduled: IDelayedCall | None = None
        self._scanning = 0
        """Scans under way in the lane (:meth:`_scan_under_way`)."""
        self._watch: object | None = None
        self._texts = TextUpkeep(self)
        self._renamer = Renamer(self)
        self._own: tuple[list[int], object] | None = None
        """New messages of ours (UIDs, origin) waiting for their place among others' UIDs."""

    def _new_disk(self, directory: str) -> MailboxDisk:
        services = self._services
        return MailboxDisk(directory, services.settings.fsync, services.names, self._account.perms)

    @property
    def directory(self) -> str:
        return self.disk.directory

    @property
    def live(self) -> bool:
        """Loaded and not closed: background work for it may go on."""
        return self._loaded and not self.closed

    @property
    def clock(self) -> IReactorTime:
        return self._services.clock

    def path_of(self, uid: int) -> str:
        return self._state.path_of(uid)

    def has(self, uid: int) -> bool:
        return uid in self._state.entries

    def known(self, uids: Iterable[int]) -> list[Entry]:
        return self._state.known(uids)

    @property
    def uidvalidity(self) -> int:
        return self._state.uidvalidity

    def io(self, task: Callable[..., T], *args: Any) -> Deferred[T]:
        return self._services.io.run(task, *args)

    def read_io(self, task: Callable[..., T], *args: Any) -> Deferred[T]:
        """Reads outside the lane (searches, infos, message files, text rows) have threads
        of their own: a long search never delays the lane's short tasks (a STORE)."""
        return self._services.reads.run(task, *args)

    # -- loading, watching, syncing -------------------------------------------------------

    async def ensure_loaded(self) -> None:
        if self._loaded:
            return
        async with self.lane:
            if self._loaded:
                return
            self._check_open()
            self._watch = self._services.hub.add(self.directory, self._on_event)
            try:
                loaded = await self.io(self._load)
            except BaseException:
                self._stop_watching()
                raise
            self._install(*loaded)
            self._loaded = True
        self._texts.fill()
        self._texts.flush_later()
        self._texts.forget_later()  # what a stop left owed

    def _load(self) -> tuple[MailboxState, Snapshot]:
        """Read the mailbox and build its state off the reactor, which only installs it.

        A big state then leaves the collector's sight before any pass walks it (where the
        process follows a ``CollectorPolicy``): the first full pass after a load of 100k
        held every thread 32-48 ms, during the first FETCH of the headers."""
        with uncollected():
            snapshot = self.disk.load(self._account.allocate_uidvalidity)
            state = MailboxState.of(snapshot)
            if len(state.entries) >= FREEZE_LOADED:
                keep_out_of_sight()
            return state, snapshot

    def _install(self, state: MailboxState, snapshot: Snapshot) -> None:
        self._state = state
        self._texts.ready = snapshot.texts_complete
        self._apply(snapshot.delta, None, notify=False)
        self._renamer.owe(snapshot.owed)

    async def _ready(self) -> None:
        """Loaded, and up to date with what other programs did before this call."""
        await self.ensure_loaded()
        await self._sync()
        self._check_open()

    async def catch_up(self, since: float | None = None) -> None:
        """Tell the listeners what other processes did before now (``ISharedMailbox``)."""
        try:
            await self._sync()
        except Exception:  # noqa: BLE001 - the command that asked has its answer anyway
            _log.failure("Syncing mailbox {name} failed", name=self.name)

    def _on_event(self, relative: str | None, appeared: bool) -> None:
        """Queue a watcher event; it is compared with our state inside the lane, after any
        change of ours in progress has been applied (so our own renames are recognised)."""
        if self.closed or self._watch is None:
            return
        self._pending.note(relative, appeared)
        if self._scheduled is None or not self._scheduled.active():
            self._scheduled = self._services.clock.callLater(DEBOUNCE, self._background_sync)

    def _background_sync(self) -> None:
        self._scheduled = None
        d = Deferred.fromCoroutine(self._sync())
        d.addErrback(lambda f: _log.failure("Syncing mailbox {name} failed", f, name=self.name))

    async def _sync(self) -> None:
        """Apply what the watcher reported, including events still queued in the kernel.

        Looks again after each scan: a file can move on while we look at it (new/ to cur/
        by another reader), and the event saying where to arrives meanwhile."""
        for _round in range(SYNC_ROUNDS):
            if not self._loaded or self.closed:
                return
            self._services.hub.poke()
            if self._pending and not self.lane.locked:
                # The state is whole (no change or scan half applied): an echo needs no look.
                self._pending.drop_echoes(self._state.by_base)
            if not self._pending:
                if not self._scanning:
                    return  # (a change of another session of ours may be under way)
                # A scan is under way: what it finds is part of "now".
                async with self.lane:
                    continue
            async with self.lane:
                await self._sync_locked()

    async def _sync_locked(self, full: bool = False, waited_for: bool = True) -> None:
        """Scan what the hints name (everything when ``full``); the lane is held.  Reads
        that come meanwhile wait for the scan when ``waited_for`` (:meth:`_sync`)."""
        with self._scan_under_way() if waited_for else nullcontext():
            delta = await self._scan_locked(self._state.by_base, full)
            if delta is not None:
                await self._apply_sliced(delta, None)
                self._texts.fill()

    @contextmanager
    def _scan_under_way(self) -> Iterator[None]:
        """Other programs' changes are being looked for and applied: a command that comes
        meanwhile waits for them (:meth:`_sync`); the lane is held."""
        self._scanning += 1
        try:
            yield
        finally:
            self._scanning -= 1

    async def _scan_locked(self, known: Mapping[str, Entry], full: bool = False) -> Delta | None:
        """What changed beyond ``known`` (the hints, or everything when ``full``), not yet
        applied; None when nothing is to be looked at, or the mailbox is gone."""
        if self.closed or not self._loaded:
            return None
        look = self._pending.take(known, full)
        if not look:
            return None
        try:
            return await self.io(self.disk.scan, known, look)
        except MailboxGone:
            _log.info("Mailbox {name} disappeared from disk", name=self.name)
            self._account.forget(self)
            await self._vanish_locked()
            return None

    async def _resync(self) -> None:
        """A file was not where we thought: look at everything again."""
        async with self.lane:
            await self._sync_locked(full=True)

    def pause_watch(self) -> object | None:
        """Stop watching for our own bulk changes: give what it returns to ``resume_watch``."""
        if self._watch is not None:
            self._services.hub.pause(self._watch)
        return self._watch

    async def resume_watch(self, paused: object | None) -> None:
        """Watch again (unless stopped meanwhile) and look at everything; the lane held.

        Other sessions' reads do not wait for that look (at 100k, 40-110 ms after the
        renames of a ``STORE 1:*``): while the watch was paused they saw no change of other
        programs either, and the look only ends that."""
        if paused is not None and paused is self._watch:
            self._services.hub.resume(paused)
            await self._sync_locked(full=True, waited_for=False)

    def _check_open(self) -> None:
        if self.closed:
            raise MailboxNotFound(self.name)

    # -- applying changes -----------------------------------------------------------------

    def _apply(self, delta: Delta, origin: object, notify: bool = True) -> Sequence[FlagChange]:
        """Make ``delta`` the state, then tell the listeners; the lane is held."""
        return self._applied(self._state.apply(delta), origin, notify)

    async def _apply_sliced(self, delta: Delta, origin: object) -> Sequence[FlagChange]:
        """``_apply`` in time slices (a STORE or EXPUNGE of many messages); the lane is
        held, so no other change comes between the slices."""
        done = Applied()
        slices = TimeSlices(self._services.turns)
        for _step in self._state.steps(delta, done):
            await slices.pause()
        return self._applied(done, origin)

    def settle(self, delta: Delta) -> None:
        """Apply the moves of files owing a rename (``renamer``): no flags change, nobody
        is told; the lane held."""
        self._state.apply(delta)

    def _applied(self, done: Applied, origin: object, notify: bool = True) -> Sequence[FlagChange]:
        if done.added:
            self._texts.flush_later()
            entries = self._state.entries  # delivered ones come parsed
            self._services.infos.keep(entries[uid] for uid in done.added if uid in entries)
        if done.removed:
            self._texts.forget_later()
        if notify:
            self._tell_added(done.added, origin)
            self.listeners.flags_changed(self, done.changes, origin)
            self.listeners.expunged(self, done.removed, origin)
        return done.changes

    # -- reading --------------------------------------------------------------------------

    async def status(self) -> MailboxStatus:
        await self._ready()
        return self._state.status()

    async def deleted_usage(self) -> tuple[int, int]:
        """From the UIDs kept by flag and the entries' sizes: no message info is read (STATUS
        DELETED-STORAGE of 2,000 deleted among 20k: 0.5 s from disk, under 1 ms so)."""
        await self._ready()
        state = self._state
        deleted = state.having.get(DELETED, set())
        entries = state.entries
        return len(deleted), sum(entries[uid].size for uid in deleted if uid in entries)

    async def uids(self) -> tuple[int, ...]:
        await self._ready()
        return self._state.uids()

    async def fetch(self, uids: Sequence[int]) -> list[MessageMeta]:
        await self.ensure_loaded()
        entries = self._state.entries
        found = [entries[uid] for uid in uids if uid in entries]
        infos = await self._with_infos(found)
        if len(found) > INLINE_METAS:
            return await self.read_io(metas, found, infos)
        return metas(found, infos)

    async def sort_keys(self, uids: Sequence[int], names: Sequence[str]) -> SortKeys:
        """Read in a thread, from the keys kept and the index (``infos.sort_keys``); the
        index's rows that had no ``sorting`` value get theirs, in the lane."""
        await self.ensure_loaded()
        keys, owed = await self.read_io(
            infos_sort_keys, self.disk, self._state.entries, list(uids), names
        )
        for start in range(0, len(owed), FILL_SORTING):  # the lane's others wait for one
            self._in_lane_later(self.disk.store_sorting, owed[start : start + FILL_SORTING])
        return keys

    async def fetch_flags(self, uids: Sequence[int]) -> list[MessageMeta]:
        """``fetch()`` without loading the infos (IFlagsMailbox): FETCH FLAGS of every
        message of a big mailbox leaves them on disk."""
        await self.ensure_loaded()
        entries = self._state.entries
        found = [entries[uid] for uid in uids if uid in entries]
        if len(found) > INLINE_METAS:
            return await self.read_io(flag_metas, found)
        return flag_metas(found)

    async def _with_infos(self, entries: Sequence[Entry]) -> list[MessageInfo | None]:
        """The infos of ``entries`` (None for a message without one): those missing are
        read in a thread when many, and kept on the entries within the backend's budget
        (``KeptInfos``), which may take them off again at once: the caller uses the list."""
        infos = [e.info for e in entries]
        missing = [e for e, info in zip(entries, infos, strict=True) if info is None]
        if not missing:
            return infos
        if len(missing) > INLINE_INFOS:
            read = await self.read_io(self.disk.load_infos, [e.uid for e in missing])
            for entry in missing:
                if entry.info is None:
                    entry.info = read.get(entry.uid)
        load_infos(self, [e for e in missing if e.info is None])  # no wait from here on
        infos = [e.info if info is None else info for e, info in zip(entries, infos, strict=True)]
        self._services.infos.keep(missing)
        return infos

    async def content(self, uid: int) -> bytes:
        """Read on the spot while the reactor thread has been busy only briefly, else in a
        thread (a FETCH or scan over many messages then yields every few milliseconds)."""
        await self.ensure_loaded()
        for attempt in range(2):
            entry = self._state.entries.get(uid)
            if entry is None:
                break
            try:
                if entry.size <= INLINE_READ and self._services.turn.allows():
                    return self.disk.read(entry.path)
                return await self.read_io(self.disk.read, entry.path)
            except FileNotFoundError:
                if attempt == 0:
                    await self._resync()
        raise KeyError(uid)

    async def search(
        self, query: SearchProgram, uids: Sequence[int]
    ) -> Sequence[int] | Narrowed | None:
        """From the index, in a thread; None (the engine evaluates) for what it cannot
        answer, and for texts while the index of this mailbox is being built; HEADER of
        fields the index does not keep is narrowed down (``search``)."""
        await self.ensure_loaded()
        found = self._state.quick_search(query.key, uids)
        if found is not None:
            return found
        if needs_texts(query) and not self._texts.ready:
            return None
        return await self.read_io(
            self.disk.search, query, tuple(uids), frozenset(self._state.flag_names)
        )

    async def first_unseen(self) -> int | None:
        await self.ensure_loaded()
        return self._state.first_unseen()

    async def changes_since(self, modseq: int) -> Changes:
        await self._ready()
        changed = await self.fetch(
            [e.uid for e in self._state.entries.values() if e.modseq > modseq]
        )
        changed.sort(key=lambda meta: meta.uid)
        async with self.lane:
            vanished = await self.io(self.disk.vanished_since, modseq)
        return Changes(changed=changed, vanished=vanished, highestmodseq=self._state.modseq)

    async def claim_recent(self) -> list[int]:
        await self._ready()  # every command's end: what other processes did is news too
        claimed = self._state.tally.claim()
        floor = self._state.uidnext
        if floor > self._state.floor:
            self._state.floor = floor
            if not claimed:
                self._in_lane_later(self.disk.set_recent_floor, floor)
        if not claimed:
            return claimed
        # Another process of the mailbox (``--workers N``) may have claimed some of them
        # first: the floor on disk says which; one write transaction reads and raises it.
        floor = max(floor, claimed[-1] + 1)
        async with self.lane:
            found = await self.io(self.disk.claim_recent, floor)
        return claimed[bisect_left(claimed, found) :]

    def _in_lane_later(self, task: Callable[..., object], *args: Any) -> None:
        """Run a small bookkeeping task in the lane without making the caller wait."""

        async def run() -> None:
            async with self.lane:
                if not self.closed:
                    await self.io(task, *args)

        Deferred.fromCoroutine(run()).addErrback(
            lambda f: _log.failure("Maildir bookkeeping for {name} failed", f, name=self.name)
        )

    # -- changing -------------------------------------------------------------------------

    @asynccontextmanager
    async def _quietly(self, count: int) -> AsyncIterator[None]:
        """Around ``count`` changes of our own, the lane held: stop the watch when they are
        many (their echoes would cost more than a rescan), then watch again and look at
        everything (others may have changed files meanwhile)."""
        paused = self.pause_watch() if count >= QUIET_THRESHOLD else None
        try:
            yield
        finally:
            await self.resume_watch(paused)

    async def _expunge_locked(self, doomed: list[Entry], origin: object) -> list[int]:
        """Remove ``doomed`` from disk and state, the lane held; the UIDs removed."""
        if not doomed:
            return []
        async with self._quietly(len(doomed)):
            delta = await self.io(self.disk.expunge, doomed, self._state.by_base)
            await self._apply_sliced(delta, origin)
        return list(delta.removed)

    async def _delivered_locked(self, delta: Delta, origin: object) -> None:
        """Apply our new messages, the lane held.  Those another process renamed in around
        the time we took our UIDs are found first, then all are applied at once and told
        in UID order: a session told of one UID could never be told of a lower one, nor
        read a state with a UID and without a lower one it is told of later.  When none
        of theirs came, ours go in a few at a time, lowest UIDs first (``Delta.ascending``:
        a COPY of 20k added at once held the reactor 15-30 ms), and are told at the end."""
        theirs: Delta | None = None
        with self._scan_under_way():
            try:
                self._services.hub.poke()
                by_base = self._state.by_base
                known: Mapping[str, Entry] = by_base
                if self._pending:  # events to compare: the echoes of ours are known too
                    known = ChainMap({entry.base: entry for entry in delta.added}, by_base)
                theirs = await self._scan_locked(known)
            except BaseException:
                self._apply_delivered(delta, None, origin)
                raise
            if theirs is None:
                await self._apply_sliced(delta, origin)
            else:
                self._apply_delivered(delta, theirs, origin)

    def _apply_delivered(self, delta: Delta, theirs: Delta | None, origin: object) -> None:
        """Ours and theirs at once: readers see them together (no await here)."""
        self._apply(delta, origin, notify=False)
        self._own = ([entry.uid for entry in delta.added], origin)
        try:
            if theirs is not None:
                self._apply(theirs, None)
                self._texts.fill()
        finally:
            own, self._own = self._own, None
            if own is not None:
                self.listeners.added(self, *own)

    def _tell_added(self, uids: list[int], origin: object) -> None:
        """``uids`` (ascending) to the listeners, our own waiting ones in their place."""
        own = self._own
        if own is not None and uids and uids[-1] > own[0][0]:
            self._own = None
            below = bisect_left(uids, own[0][0])
            self.listeners.added(self, uids[:below], origin)
            self.listeners.added(self, *own)
            uids = uids[below:]
        self.listeners.added(self, uids, origin)

    async def append(
        self, message: bytes, flags: frozenset[str], internaldate: datetime | None, origin: object
    ) -> AppendResult:
        (result,) = await self.append_many([NewMessage(message, flags, internaldate)], origin)
        return result

    async def append_many(self, batch: Sequence[NewMessage], origin: object) -> list[AppendResult]:
        """Durable (fsynced and renamed into ``cur/``) before the result arrives; the files
        of a failed batch are removed, none delivered.

        No sync first: the UIDs come from the uidlist under its lock anyway, and appends
        from several sessions then write their files in parallel.  The batch's files are
        written ``PREPARE_AHEAD`` at a time, then delivered together (one sync of the
        uidlist, one index transaction)."""
        await self.ensure_loaded()
        self._check_open()
        prepared: list[Prepared] = []
        try:
            ahead = DeferredSemaphore(PREPARE_AHEAD)
            done = await DeferredList(
                [
                    ahead.run(self.io, self.disk.prepare, new.message,
                              frozenset(new.flags) - {RECENT}, new.internaldate)
                    for new in batch
                ],
                consumeErrors=True,
            )  # fmt: skip
            prepared = [value for ok, value in done if ok]
            for ok, value in done:
                if not ok:  # a Failure in the place of the Prepared
                    cast(Failure, value).raiseException()
            async with self.lane:
                self._check_open()
                delta = await self.io(self.disk.deliver, prepared)
                await self._delivered_locked(delta, origin)
        except BaseException:
            await self.io(self.disk.discard, prepared)
            raise
        return [AppendResult(self.uidvalidity, entry.uid) for entry in delta.added]

    async def store(
        self,
        uids: Sequence[int],
        mode: StoreMode,
        flags: frozenset[str],
        origin: object,
        unchangedsince: int | None = None,
    ) -> StoreResult:
        await self._ready()
        flags = frozenset(flags) - {RECENT}
        changed: list[Sequence[FlagChange]] = []
        async with self.lane:
            if len(uids) > INLINE_PLAN:
                # Entries change only in the lane, which we hold: a thread may read them.
                groups, failed = await self.io(self._state.plan, uids, mode, flags, unchangedsince)
            else:
                groups, failed = self._state.plan(uids, mode, flags, unchangedsince)
            if sum(map(len, groups.values())) > LAZY_STORE:
                # The files are renamed after the answer (``renamer``).
                delta = await self.io(self.disk.owe_flags, groups)
                groups = {}
                changed.append(await self._apply_sliced(delta, origin))
                for owed in delta.flagged.values():
                    self._renamer.owe(owed)
            plan = _pairs(groups)
            async with self._quietly(len(plan)):
                for attempt in range(2):
                    if not plan:
                        break
                    delta = await self._set_flags(plan)
                    changed.append(await self._apply_sliced(delta, origin))
                    if not delta.failed:
                        break
                    # Files renamed by another program meanwhile: learn their names, retry.
                    await self._sync_locked(full=True)
                    if attempt == 0:
                        groups, more = self._state.plan(delta.failed, mode, flags, unchangedsince)
                        plan = _pairs(groups)
                        failed += more
        if len(changed) == 1:  # a STORE of many hands on its changes as they are (lazily)
            return StoreResult(changed[0], failed)
        return StoreResult([change for part in changed for change in part], failed)

    async def _set_flags(self, plan: Sequence[tuple[Entry, frozenset[str]]]) -> Delta:
        """``disk.set_flags`` on the reactor thread when it is short and waits for
        nothing, else in a thread; the lane held."""
        if len(plan) <= INLINE_STORE and self._services.turn.allows():
            delta = self.disk.set_flags_now(plan)
            if delta is not None:
                if self.disk.index.checkpoint_owed:
                    self._checkpoint_later()
                return delta
        return await self.io(self.disk.set_flags, plan)

    def _checkpoint_later(self) -> None:
        """The checkpoint that commits on the reactor thread left out, in a thread, after
        the lane's current holder."""
        self.disk.index.unchecked = 0  # one at a time
        self._in_lane_later(self.disk.index.checkpoint)

    async def copy(self, uids: Sequence[int], destination: str, origin: object) -> CopyResult:
        """Hard links (Dovecot does the same), so a copy costs no data writes."""
        await self._ready()
        target = await self._account.open(destination)
        return await self._copy_to(target, uids, origin)

    async def _copy_to(
        self, target: MaildirMailbox, uids: Sequence[int], origin: object
    ) -> CopyResult:
        known = self._state.known(uids)
        infos = await self._with_infos(known)  # a COPY of 20k read them on the reactor thread
        wanted = {
            e.uid: (e, info) for e, info in zip(known, infos, strict=True) if info is not None
        }
        prepared = await self.io(self._link_in, target, list(wanted.values()))
        linked = {item.source_uid for item in prepared}
        lost = [uid for uid in wanted if uid not in linked]
        if lost:
            await self._resync()
            entries = self._state.entries
            retry = [(entries[uid], wanted[uid][1]) for uid in lost if uid in entries]
            prepared += await self.io(target.disk.link_in, self._sources(retry))
            prepared.sort(key=lambda item: item.source_uid)
        if not prepared:
            return CopyResult(target.uidvalidity, [])
        try:
            async with target.lane:
                target._check_open()
                async with target._quietly(len(prepared)):
                    delta = await target.io(target.disk.deliver, prepared)
                    await target._delivered_locked(delta, origin)
        except BaseException:
            await self.io(target.disk.discard, prepared)
            raise
        pairs = [
            (item.source_uid, entry.uid) for item, entry in zip(prepared, delta.added, strict=True)
        ]
        return CopyResult(target.uidvalidity, pairs)

    def _sources(self, entries: Iterable[tuple[Entry, MessageInfo]]) -> list[Source]:
        return [(self.disk.path(e.path), e, e.flags, info) for e, info in entries]

    def _link_in(
        self, target: MaildirMailbox, entries: Sequence[tuple[Entry, MessageInfo]]
    ) -> list[Prepared]:
        """An I/O task: ``entries`` (with their infos) linked into ``target``'s ``tmp/``
        (their paths are made here too: a join per message, 20 ms for a COPY of 20k), with
        the search rows of this mailbox's index.  An entry renamed meanwhile is not found,
        as when it is renamed just before its link."""
        texts = self.disk.stored_texts([entry.uid for entry, _ in entries])
        return target.disk.link_in(self._sources(entries), texts)

    async def move(self, uids: Sequence[int], destination: str, origin: object) -> CopyResult:
        """COPY, then expunge the originals (one expunged event)."""
        result = await self.copy(uids, destination, origin)
        moved = [source for source, _ in result.pairs]
        if moved:
            async with self.lane:
                await self._expunge_locked(self._state.known(moved), origin)
        return result

    async def expunge(self, uids: Sequence[int] | None, origin: object) -> list[int]:
        await self._ready()
        async with self.lane:
            candidates = self._state.entries.values() if uids is None else self._state.known(uids)
            return await self._expunge_locked(expungeable(candidates), origin)

    # -- life cycle (driven by the account) ----------------------------------------------

    def _stop_watching(self) -> None:
        self._texts.stop()
        self._renamer.stop()
        if self._watch is not None:
            self._services.hub.remove(self._watch)
            self._watch = None
        if self._scheduled is not None and self._scheduled.active():
            self._scheduled.cancel()
        self._scheduled = None

    async def suspend(self) -> None:
        """Let go of the files (before the directory is renamed); reloads on next use."""
        async with self.lane:
            self._stop_watching()
            self.disk.close()
            self._loaded = False
            self._pending.clear()

    def relocate(self, name: str, directory: str) -> None:
        """After a RENAME: the same mailbox (UIDs, listeners) under another name."""
        self.name = name
        self.disk = self._new_disk(directory)

    async def shutdown(self) -> None:
        """The account was closed: stop watching and close the index (whatever became of
        it: a mailbox gone from disk has its index closed already)."""
        async with self.lane:
            self.closed = True
            self._stop_watching()
            try:
                if self._loaded:
                    await self.io(self.disk.keep_snapshot)
            except Exception:  # noqa: BLE001 - the snapshot only speeds up the next load
                _log.failure("Keeping the snapshot of {name} failed", name=self.name)
            finally:
                self.disk.close()

    async def vanish(self) -> None:
        """Deleted: whoever has it selected sees every message expunged."""
        async with self.lane:
            await self._vanish_locked()

    async def _vanish_locked(self) -> None:
        uids = self._state.uids()
        self.closed = True
        self._stop_watching()
        self.disk.close()
        self._state.clear()
        self.listeners.expunged(self, list(uids), None)

    def __repr__(self) -> str:
        return f"<MaildirMailbox {self.name!r} at {os.path.basename(self.directory) or '/'}>"


def _pairs(groups: Mapping[frozenset[str], list[Entry]]) -> list[tuple[Entry, frozenset[str]]]:
    """A plan of ``MailboxState.plan`` as (entry, new flags), ascending by UID."""
    pairs = [(entry, flags) for flags, entries in groups.items() for entry in entries]
    pairs.sort(key=lambda pair: pair[0].uid)
    return pairs
