"""One maildir mailbox as the sessions of this process share it.

The reactor thread keeps the mailbox's state in memory (an ``Entry`` per message, counters,
listeners) and answers reads from it.  Disk work runs as tasks of the mailbox's *lane*: a
DeferredLock held from before the task until its ``Delta`` has been applied and the
listeners told, so tasks never overlap and events keep the order of the changes.

Changes by other programs arrive from the watcher as file events.  They are queued and
compared with the state inside the lane, where the echoes of our own renames are recognised
and dropped; the others become "hints" that a scan task looks at shortly after
(``DEBOUNCE``), or before the next command that reports state, whichever comes first.

The ``IMailbox`` methods are coroutines, as the interface's ``Awaitable`` types allow.
"""

from __future__ import annotations

import os
from bisect import bisect_left
from collections import ChainMap
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

from twisted.internet.defer import Deferred, DeferredLock
from twisted.internet.interfaces import IDelayedCall
from twisted.logger import Logger
from zope.interface import implementer

from mailserv.backends.kit import Listened, ListenerSet, Tally, expungeable, plan_store
from mailserv.backends.maildir import filenames
from mailserv.backends.maildir.disk import MailboxDisk, MailboxGone, crlf
from mailserv.backends.maildir.io import INLINE_READ
from mailserv.backends.maildir.records import Delta, Entry, Snapshot
from mailserv.backends.maildir.search import needs_texts
from mailserv.backends.maildir.watch import KEYWORDS
from mailserv.errors import MailboxNotFound
from mailserv.interfaces import (
    RECENT,
    AppendResult,
    Changes,
    CopyResult,
    FlagChange,
    ISearchableMailbox,
    ISharedMailbox,
    MailboxStatus,
    MessageMeta,
    StoreMode,
    StoreResult,
)
from mailserv.message.parse import parse_message
from mailserv.message.store import UnknownFormat, loads
from mailserv.search import SearchProgram

if TYPE_CHECKING:
    from mailserv.backends.maildir.account import MaildirAccount

_log = Logger()

DEBOUNCE = 0.005
"""Seconds to gather a burst of file events into one scan."""
SYNC_ROUNDS = 3
QUIET_THRESHOLD = 500
"""Own changes from which watching is paused and the mailbox rescanned afterwards."""
MAX_QUEUED_EVENTS = 100_000
"""Beyond this many unprocessed events a full scan is cheaper (and memory stays bounded)."""
INLINE_INFOS = 64
"""Infos of up to this many messages are read on the reactor thread; more in a thread."""
INLINE_METAS = 5000
"""Results of up to this many messages are built on the reactor thread (a few ms; FETCH
asks in batches of this size); more in a thread (the engine's own SEARCH asks for all)."""
INLINE_PLAN = 1000
"""STOREs of more messages than this are planned in a thread."""
TEXT_BATCH = 200
"""Messages whose search rows one step of an index rebuild makes."""
FLUSH_DELAY = 0.1
"""Seconds new texts wait to enter the trigram index together (SEARCH sees them already)."""
FLUSH_BATCH = 500

T = TypeVar("T")


@implementer(ISearchableMailbox, ISharedMailbox)
class MaildirMailbox(Listened):
    def __init__(self, account: MaildirAccount, name: str, directory: str) -> None:
        self.name = name
        self._account = account
        self._services = account.services
        self._disk = self._new_disk(directory)
        self._lane = DeferredLock()
        self._entries: dict[int, Entry] = {}
        self._by_base: dict[str, Entry] = {}
        self._ordered = True
        self._loaded = False
        self.closed = False
        self.uidvalidity = 0
        self._uidnext = 1
        self._modseq = 1
        self._floor = 1
        self._tally = Tally()  # size, unseen, unclaimed
        self.listeners = ListenerSet()
        self._events: list[tuple[str, bool]] = []
        self._hints: dict[str, set[str]] = {}
        self._rescan = False
        self._keywords_changed = False
        self._scheduled: IDelayedCall | None = None
        self._watch: object | None = None
        self._flag_names: set[str] = set()
        """Every flag spelling messages have had since loading (SEARCH's keyword spellings)."""
        self._texts_ready = False
        """Every message has its search row (else SEARCH of texts is left to the engine)."""
        self._filling = False
        self._flush: IDelayedCall | None = None
        self._own: tuple[list[int], object] | None = None
        """New messages of ours (UIDs, origin) waiting for their place among others' UIDs."""

    def _new_disk(self, directory: str) -> MailboxDisk:
        services = self._services
        return MailboxDisk(directory, services.settings.fsync, services.names, self._account.perms)

    @property
    def directory(self) -> str:
        return self._disk.directory

    def _io(self, task: Callable[..., T], *args: Any) -> Deferred[T]:
        return self._services.io.run(task, *args)

    def _read_io(self, task: Callable[..., T], *args: Any) -> Deferred[T]:
        """Reads outside the lane (searches, infos, message files, text rows) have threads
        of their own: a long search never delays the lane's short tasks (a STORE)."""
        return self._services.reads.run(task, *args)

    # -- loading, watching, syncing -------------------------------------------------------

    async def ensure_loaded(self) -> None:
        if self._loaded:
            return
        async with self._lane:
            if self._loaded:
                return
            self._check_open()
            self._watch = self._services.hub.add(self.directory, self._on_event)
            try:
                loaded = await self._io(self._load)
            except BaseException:
                self._stop_watching()
                raise
            self._install(*loaded)
            self._loaded = True
        self._fill_texts()
        self._flush_texts_later()

    def _load(self) -> tuple[Snapshot, dict[int, Entry], dict[str, Entry], Tally, set[str]]:
        """Read the mailbox and build its state (an I/O task: the state is new, nobody
        else sees it yet), so the reactor only installs it."""
        snapshot = self._disk.load(self._account.allocate_uidvalidity)
        entries = {entry.uid: entry for entry in snapshot.entries}
        by_base = {entry.base: entry for entry in snapshot.entries}
        floor = snapshot.recent_floor
        tally = Tally()
        names: set[str] = set()
        for entry in snapshot.entries:
            tally.add(entry.uid, entry.flags, entry.size, entry.uid >= floor)
            names |= entry.flags
        return snapshot, entries, by_base, tally, names

    def _install(
        self,
        snapshot: Snapshot,
        entries: dict[int, Entry],
        by_base: dict[str, Entry],
        tally: Tally,
        names: set[str],
    ) -> None:
        self.uidvalidity = snapshot.uidvalidity
        self._entries = entries
        self._by_base = by_base
        self._ordered = list(entries) == sorted(entries)
        self._floor = snapshot.recent_floor
        self._tally = tally
        self._flag_names = names
        self._texts_ready = snapshot.texts_complete
        self._apply(snapshot.delta, None, notify=False)

    async def _ready(self) -> None:
        """Loaded, and up to date with what other programs did before this call."""
        await self.ensure_loaded()
        await self._sync()
        self._check_open()

    async def catch_up(self) -> None:
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
        if relative is None or len(self._events) >= MAX_QUEUED_EVENTS:
            self._events.clear()
            self._rescan = True
        elif relative == KEYWORDS:
            self._keywords_changed = True
        else:
            self._events.append((relative, appeared))
        if self._scheduled is None or not self._scheduled.active():
            self._scheduled = self._services.clock.callLater(DEBOUNCE, self._background_sync)

    def _take_events(self, by_base: Mapping[str, Entry]) -> None:
        """Turn queued events into hints, dropping the echoes of our own changes."""
        events, self._events = self._events, []
        hints = self._hints
        for relative, appeared in events:
            base = filenames.split(relative[4:])[0]
            entry = by_base.get(base)
            if appeared == (entry is not None and entry.path == relative):
                continue  # what we did ourselves, or a name we already let go of
            hints.setdefault(base, set()).add(relative)

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
            if not (self._events or self._hints or self._rescan or self._keywords_changed):
                if not self._lane.locked:
                    return
                # A scan (or a change) is under way: what it finds is part of "now".
                async with self._lane:
                    continue
            async with self._lane:
                await self._sync_locked()

    async def _sync_locked(self, full: bool = False) -> None:
        """Scan what the hints name (everything when ``full``); the lane is held."""
        delta = await self._scan_locked(self._by_base, full)
        if delta is not None:
            self._apply(delta, None)
            self._fill_texts()

    async def _scan_locked(self, known: Mapping[str, Entry], full: bool = False) -> Delta | None:
        """What changed beyond ``known`` (the hints, or everything when ``full``), not yet
        applied; None when nothing is to be looked at, or the mailbox is gone."""
        if self.closed or not self._loaded:
            return None
        self._take_events(known)
        hints, self._hints = self._hints, {}
        full = full or self._rescan
        keywords, self._rescan, self._keywords_changed = self._keywords_changed, False, False
        if not hints and not full and not keywords:
            return None
        try:
            return await self._io(self._disk.scan, known, None if full else hints)
        except MailboxGone:
            _log.info("Mailbox {name} disappeared from disk", name=self.name)
            self._account.forget(self)
            await self._vanish_locked()
            return None

    async def _resync(self) -> None:
        """A file was not where we thought: look at everything again."""
        async with self._lane:
            await self._sync_locked(full=True)

    def _check_open(self) -> None:
        if self.closed:
            raise MailboxNotFound(self.name)

    # -- applying changes -----------------------------------------------------------------

    def _apply(self, delta: Delta, origin: object, notify: bool = True) -> list[FlagChange]:
        """Make ``delta`` the state, then tell the listeners; the lane is held."""
        entries = self._entries
        added = []
        last = next(reversed(entries)) if entries else 0
        for entry in delta.added:
            if entry.uid in entries:
                continue
            if entry.uid < last:
                self._ordered = False
            last = max(last, entry.uid)
            entries[entry.uid] = entry
            self._by_base[entry.base] = entry
            self._tally.add(entry.uid, entry.flags, entry.size, entry.uid >= self._floor)
            self._flag_names |= entry.flags
            added.append(entry.uid)
        changes = []
        for update in delta.updated:
            known = entries.get(update.uid)
            if known is None:
                continue
            known.path, known.keep = update.path, update.keep
            if update.modseq and update.flags != known.flags:
                self._tally.reflag(known.flags, update.flags)
                self._flag_names |= update.flags
                known.flags, known.modseq = update.flags, update.modseq
                changes.append(FlagChange(known.uid, known.flags, known.modseq))
        removed = []
        for uid in delta.removed:
            gone = entries.pop(uid, None)
            if gone is None:
                continue
            if self._by_base.get(gone.base) is gone:
                del self._by_base[gone.base]
            self._tally.remove(uid, gone.flags, gone.size)
            removed.append(uid)
        self._modseq = max(self._modseq, delta.highestmodseq)
        self._uidnext = max(self._uidnext, delta.uidnext)
        if added:
            self._flush_texts_later()
        if notify:
            added.sort()
            self._tell_added(added, origin)
            self.listeners.flags_changed(self, changes, origin)
            self.listeners.expunged(self, removed, origin)
        return changes

    # -- reading --------------------------------------------------------------------------

    async def status(self) -> MailboxStatus:
        await self._ready()
        return self._tally.status(self.uidvalidity, self._uidnext, len(self._entries), self._modseq)

    async def uids(self) -> tuple[int, ...]:
        await self._ready()
        return self._uid_tuple()

    def _uid_tuple(self) -> tuple[int, ...]:
        if not self._ordered:
            self._entries = dict(sorted(self._entries.items()))
            self._ordered = True
        return tuple(self._entries)

    async def fetch(self, uids: Sequence[int]) -> list[MessageMeta]:
        await self.ensure_loaded()
        entries = self._entries
        found = [entries[uid] for uid in uids if uid in entries]
        missing = [e for e in found if e.info is None]
        if len(missing) > INLINE_INFOS:
            infos = await self._read_io(self._disk.load_infos, [e.uid for e in missing])
            for entry in missing:
                if entry.info is None:
                    entry.info = infos.get(entry.uid)
        self._load_infos(e for e in found if e.info is None)
        if len(found) > INLINE_METAS:
            return await self._read_io(_metas, found)
        return _metas(found)

    def _load_infos(self, entries: Iterable[Entry]) -> None:
        """Infos come from the index (one query per batch); a file is parsed only when its
        row has none (then the index is given it)."""
        wanted = list(entries)
        if not wanted:
            return
        blobs = self._disk.index.infos([e.uid for e in wanted])
        for entry in wanted:
            blob = blobs.get(entry.uid)
            if blob is not None:
                try:
                    entry.info = loads(blob)
                    continue
                except UnknownFormat:
                    pass
            self._reparse(entry)

    def _reparse(self, entry: Entry) -> None:
        try:
            raw = self._read(entry)
        except FileNotFoundError:
            return
        entry.info = info = parse_message(raw)
        uid = entry.uid

        async def remember() -> None:
            async with self._lane:
                if not self.closed and uid in self._entries:
                    await self._io(self._disk.store_info, uid, info)

        Deferred.fromCoroutine(remember()).addErrback(
            lambda f: _log.failure("Indexing {name} UID {uid} failed", f, name=self.name, uid=uid)
        )

    def _read(self, entry: Entry) -> bytes:
        with open(self._disk.path(entry.path), "rb") as f:
            return crlf(f.read())

    async def content(self, uid: int) -> bytes:
        """Read on the spot while the reactor thread has been busy only briefly, else in a
        thread (a FETCH or scan over many messages then yields every few milliseconds)."""
        await self.ensure_loaded()
        for attempt in range(2):
            entry = self._entries.get(uid)
            if entry is None:
                break
            try:
                if entry.size <= INLINE_READ and self._services.turn.allows():
                    return self._disk.read(entry.path)
                return await self._read_io(self._disk.read, entry.path)
            except FileNotFoundError:
                if attempt == 0:
                    await self._resync()
        raise KeyError(uid)

    async def search(self, query: SearchProgram, uids: Sequence[int]) -> Sequence[int] | None:
        """From the index, in a thread; None (the engine evaluates) for what it cannot
        answer, and for texts while the index of this mailbox is being built."""
        await self.ensure_loaded()
        if needs_texts(query) and not self._texts_ready:
            return None
        return await self._read_io(
            self._disk.search, query, tuple(uids), frozenset(self._flag_names)
        )

    def _fill_texts(self) -> None:
        """Make the missing search rows (an index from before the full-text index, or one
        that was dropped), a batch at a time: files read and decoded in a thread, the rows
        written in the lane."""
        if self._texts_ready or self._filling or self.closed or not self._loaded:
            return
        self._filling = True

        async def fill() -> None:
            try:
                while not self.closed and self._loaded:
                    missing = await self._read_io(self._disk.missing_texts, TEXT_BATCH)
                    if not missing:
                        self._texts_ready = True
                        return
                    entries = self._entries
                    files = [(u, entries[u].path) for u in missing if u in entries]
                    rows = await self._read_io(self._disk.text_rows, [f for f in files if f[1]])
                    if not rows:
                        return  # files not where we thought: the next sync starts again
                    async with self._lane:
                        if self.closed or not self._loaded:
                            return
                        await self._io(self._disk.store_texts, rows)
                    self._flush_texts_later()
            finally:
                self._filling = False

        Deferred.fromCoroutine(fill()).addErrback(
            lambda f: _log.failure("Indexing the texts of {name} failed", f, name=self.name)
        )

    def _flush_texts_later(self) -> None:
        """Soon, add the texts of new messages to the trigram index, a batch at a time."""
        if self._flush is not None and self._flush.active():
            return

        async def flush() -> None:
            more = True
            while more:
                async with self._lane:
                    if self.closed or not self._loaded:
                        return
                    more = await self._io(self._disk.flush_texts, FLUSH_BATCH)

        def start() -> None:
            self._flush = None
            Deferred.fromCoroutine(flush()).addErrback(
                lambda f: _log.failure("Indexing the texts of {name} failed", f, name=self.name)
            )

        self._flush = self._services.clock.callLater(FLUSH_DELAY, start)

    async def changes_since(self, modseq: int) -> Changes:
        await self._ready()
        changed = await self.fetch([e.uid for e in self._entries.values() if e.modseq > modseq])
        changed.sort(key=lambda meta: meta.uid)
        async with self._lane:
            vanished = await self._io(self._disk.vanished_since, modseq)
        return Changes(changed=changed, vanished=vanished, highestmodseq=self._modseq)

    async def claim_recent(self) -> list[int]:
        await self._ready()  # every command's end: what other processes did is news too
        claimed = self._tally.claim()
        floor = self._uidnext
        if floor > self._floor:
            self._floor = floor
            self._in_lane_later(self._disk.set_recent_floor, floor)
        return claimed

    def _in_lane_later(self, task: Callable[..., object], *args: Any) -> None:
        """Run a small bookkeeping task in the lane without making the caller wait."""

        async def run() -> None:
            async with self._lane:
                if not self.closed:
                    await self._io(task, *args)

        Deferred.fromCoroutine(run()).addErrback(
            lambda f: _log.failure("Maildir bookkeeping for {name} failed", f, name=self.name)
        )

    # -- changing -------------------------------------------------------------------------

    @asynccontextmanager
    async def _quietly(self, count: int) -> AsyncIterator[None]:
        """Around ``count`` changes of our own, the lane held: stop the watch when they are
        many (their echoes would cost more than a rescan), then watch again and look at
        everything (others may have changed files meanwhile)."""
        if count < QUIET_THRESHOLD or self._watch is None:
            yield
            return
        self._services.hub.pause(self._watch)
        try:
            yield
        finally:
            if self._watch is not None:
                self._services.hub.resume(self._watch)
                await self._sync_locked(full=True)

    async def _expunge_locked(self, doomed: list[Entry], origin: object) -> list[int]:
        """Remove ``doomed`` from disk and state, the lane held; the UIDs removed."""
        if not doomed:
            return []
        async with self._quietly(len(doomed)):
            delta = await self._io(self._disk.expunge, doomed, self._by_base)
            self._apply(delta, origin)
        return list(delta.removed)

    async def _delivered_locked(self, delta: Delta, origin: object) -> None:
        """Apply our new messages, the lane held.  Those another process renamed in around
        the time we took our UIDs are found first, then all are applied at once and told
        in UID order: a session told of one UID could never be told of a lower one, nor
        read a state with a UID and without a lower one it is told of later."""
        mine = {entry.base: entry for entry in delta.added}
        theirs: Delta | None = None
        try:
            self._services.hub.poke()
            theirs = await self._scan_locked(ChainMap(mine, self._by_base))
        finally:
            # No await from here on: readers see ours and theirs together.
            self._apply(delta, origin, notify=False)
            self._own = ([entry.uid for entry in delta.added], origin)
            try:
                if theirs is not None:
                    self._apply(theirs, None)
                    self._fill_texts()
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
        """Durable (fsynced and renamed into ``cur/``) before the result arrives.

        No sync first: the UID comes from the uidlist under its lock anyway, and appends
        from several sessions then write their files in parallel."""
        await self.ensure_loaded()
        self._check_open()
        prepared = await self._io(
            self._disk.prepare, message, frozenset(flags) - {RECENT}, internaldate
        )
        try:
            async with self._lane:
                self._check_open()
                delta = await self._io(self._disk.deliver, [prepared])
                await self._delivered_locked(delta, origin)
        except BaseException:
            await self._io(self._disk.discard, [prepared])
            raise
        return AppendResult(self.uidvalidity, delta.added[0].uid)

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
        changed: list[FlagChange] = []
        async with self._lane:
            if len(uids) > INLINE_PLAN:
                # Entries change only in the lane, which we hold: a thread may read them.
                plan, failed = await self._io(self._plan, uids, mode, flags, unchangedsince)
            else:
                plan, failed = self._plan(uids, mode, flags, unchangedsince)
            async with self._quietly(len(plan)):
                for attempt in range(2):
                    if not plan:
                        break
                    delta = await self._io(self._disk.set_flags, plan)
                    changed += self._apply(delta, origin)
                    if not delta.failed:
                        break
                    # Files renamed by another program meanwhile: learn their names, retry.
                    await self._sync_locked(full=True)
                    if attempt == 0:
                        plan, more = plan_store(
                            self._known(delta.failed), mode, flags, unchangedsince
                        )
                        failed += more
        return StoreResult(changed, failed)

    def _plan(
        self, uids: Sequence[int], mode: StoreMode, flags: frozenset[str], since: int | None
    ) -> tuple[list[tuple[Entry, frozenset[str]]], list[int]]:
        return plan_store(self._known(uids), mode, flags, since)

    def _known(self, uids: Iterable[int]) -> list[Entry]:
        """The entries of ``uids`` still here, ascending."""
        entries = self._entries
        return [entries[uid] for uid in sorted(set(uids)) if uid in entries]

    async def copy(self, uids: Sequence[int], destination: str, origin: object) -> CopyResult:
        """Hard links (Dovecot does the same), so a copy costs no data writes."""
        await self._ready()
        target = await self._account.open(destination)
        return await self._copy_to(target, uids, origin)

    async def _copy_to(
        self, target: MaildirMailbox, uids: Sequence[int], origin: object
    ) -> CopyResult:
        wanted = self._known(uids)
        self._load_infos(e for e in wanted if e.info is None)
        wanted = [e for e in wanted if e.info is not None]
        prepared = await self._io(target._disk.link_in, self._sources(wanted))
        linked = {item.source_uid for item in prepared}
        lost = [e.uid for e in wanted if e.uid not in linked]
        if lost:
            await self._resync()
            retry = [self._entries[uid] for uid in lost if uid in self._entries]
            prepared += await self._io(target._disk.link_in, self._sources(retry))
            prepared.sort(key=lambda item: item.source_uid)
        if not prepared:
            return CopyResult(target.uidvalidity, [])
        try:
            async with target._lane:
                target._check_open()
                async with target._quietly(len(prepared)):
                    delta = await target._io(target._disk.deliver, prepared)
                    await target._delivered_locked(delta, origin)
        except BaseException:
            await self._io(target._disk.discard, prepared)
            raise
        pairs = [
            (item.source_uid, entry.uid) for item, entry in zip(prepared, delta.added, strict=True)
        ]
        return CopyResult(target.uidvalidity, pairs)

    def _sources(self, entries: Iterable[Entry]) -> list[tuple[str, Entry, frozenset[str]]]:
        return [(self._disk.path(e.path), e, e.flags) for e in entries]

    async def move(self, uids: Sequence[int], destination: str, origin: object) -> CopyResult:
        """COPY, then expunge the originals (one expunged event)."""
        result = await self.copy(uids, destination, origin)
        moved = [source for source, _ in result.pairs]
        if moved:
            async with self._lane:
                await self._expunge_locked(self._known(moved), origin)
        return result

    async def expunge(self, uids: Sequence[int] | None, origin: object) -> list[int]:
        await self._ready()
        async with self._lane:
            candidates = self._entries.values() if uids is None else self._known(uids)
            return await self._expunge_locked(expungeable(candidates), origin)

    # -- life cycle (driven by the account) ----------------------------------------------

    def _stop_watching(self) -> None:
        if self._flush is not None and self._flush.active():
            self._flush.cancel()
        self._flush = None
        if self._watch is not None:
            self._services.hub.remove(self._watch)
            self._watch = None
        if self._scheduled is not None and self._scheduled.active():
            self._scheduled.cancel()
        self._scheduled = None

    async def suspend(self) -> None:
        """Let go of the files (before the directory is renamed); reloads on next use."""
        async with self._lane:
            self._stop_watching()
            self._disk.close()
            self._loaded = False
            self._events.clear()
            self._hints.clear()
            self._rescan = False

    def relocate(self, name: str, directory: str) -> None:
        """After a RENAME: the same mailbox (UIDs, listeners) under another name."""
        self.name = name
        self._disk = self._new_disk(directory)

    async def shutdown(self) -> None:
        """The account was closed: stop watching and close the index."""
        async with self._lane:
            self.closed = True
            self._stop_watching()
            self._disk.close()

    async def vanish(self) -> None:
        """Deleted: whoever has it selected sees every message expunged."""
        async with self._lane:
            await self._vanish_locked()

    async def _vanish_locked(self) -> None:
        uids = self._uid_tuple()
        self.closed = True
        self._stop_watching()
        self._disk.close()
        self._entries.clear()
        self._by_base.clear()
        self._tally.clear()
        self.listeners.expunged(self, list(uids), None)

    def __repr__(self) -> str:
        return f"<MaildirMailbox {self.name!r} at {os.path.basename(self.directory) or '/'}>"


def _metas(entries: Sequence[Entry]) -> list[MessageMeta]:
    return [
        MessageMeta(e.uid, e.flags, e.date, e.size, e.modseq, e.info)
        for e in entries
        if e.info is not None
    ]
