"""One mailbox of the SQL store: the IMailbox the engine talks to.

There is one object per mailbox id in a process (the backend keeps a weak registry), so every
session of the process shares its listeners; other processes' changes arrive through the
backend's change notices.  The object knows the newest modseq and the highest UID it has
reported, to catch up after the notices connection was lost.

FETCH of message content asks ``content(uid)`` once per message: the UIDs of the latest
``fetch()`` are remembered, and a miss loads the bytes of the next few of them in one query.

New messages are told to the listeners in UID order.  Transactions return from their threads
in any order, so the APPEND that took UID 5 may report before the COPY that took UID 4; a
session that announced 5 could never announce 4 (sequence numbers follow UIDs).  UIDs are
taken one after the other and every one taken is reported (a rollback gives it back), so an
event whose first UID is not the next one waits for the missing ones, at most
``HOLD_SECONDS`` (a UID taken by a tool that sends no notice).
"""

from __future__ import annotations

import math
import time
from bisect import bisect_left
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from zope.interface import implementer

from mailserv.backends.kit import Listened, ListenerSet
from mailserv.backends.sql import hierarchy, messages, reads, search, sortkeys
from mailserv.interfaces import (
    RECENT,
    AppendResult,
    Changes,
    CopyResult,
    FlagChange,
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

if TYPE_CHECKING:
    from mailserv.backends.sql.backend import SqlBackend
    from mailserv.search import SearchProgram

HOLD_SECONDS = 1.0
"""How long new UIDs wait for the lower ones still in flight before they are told anyway."""
READAHEAD_MESSAGES = 64
READAHEAD_BYTES = 16 * 1024 * 1024
QUICK_MESSAGES = 64
"""A FETCH or STORE of at most this many messages runs as a ``quick`` transaction (on
SQLite, in the reactor's thread: see the module ``quick``)."""
QUICK_VIEW = 20_000
"""A SEARCH over at most this many messages, and the UID list of a mailbox of at most this
many brought up to date, run as ``quick`` transactions: the Python work grows with them
(matching a kept answer to a session's view with gaps: 0.6 ms at 20,000; leaving expunged
UIDs out of the list: about 1 ms); the database's own work is bounded by the quick budget."""
PARSE_IN_THREAD = 1024 * 1024
"""Messages larger than this are parsed and hashed off the reactor thread, as are the
messages of a batch (0.5 ms each for realistic ones: 64 held the reactor for 33 ms)."""
OFFER_SECONDS = 0.5
"""How long the status read with a mailbox's opening stands for its ``status()``: a SELECT
asks at once; a later caller reads again (another frontend's change may be on its way)."""


@implementer(IFirstUnseen, IFlagsMailbox, ISearchableMailbox, ISharedMailbox, ISortKeysMailbox)
class SqlMailbox(Listened):
    """Mailbox ``box_id`` of account ``account_id``; ``name`` follows renames."""

    def __init__(
        self,
        backend: SqlBackend,
        account_id: int,
        row: hierarchy.BoxRow,
    ) -> None:
        self.name = row.name
        self.id = row.id
        self.uidvalidity = row.uidvalidity
        self.account_id = account_id
        self.synced = row.highestmodseq
        """Every change up to this modseq was told (or came before this object)."""
        self._seen: set[int] = set()
        """Modseqs above ``synced`` told already (events arrive out of order)."""
        self.top_uid = row.uidnext - 1
        self._backend = backend
        self.listeners = ListenerSet()
        self._held: list[tuple[list[int], object, bool]] = []
        """Added events waiting for lower UIDs: (uids ascending, origin, remote)."""
        self._hold_timer: Any = None
        self._readahead: list[tuple[int, int]] = []  # (uid, size) of the last fetch()
        self._raw: dict[int, bytes] = {}
        self._uid_list: reads.UidList | None = None
        """The mailbox's UIDs as last read (see ``uids``)."""
        self._look: tuple[int, int, reads.Look] | None = None
        """The last ``status()`` read, and ``_set_told``, ``_told_count`` when it started."""
        self._uids_taken = self._unseen_taken = True
        """``uids()``, ``first_unseen()`` were asked since the last ``status()`` (which
        answers each once)."""
        self._set_told = 0
        """Added and expunged events told to the listeners so far (see ``_fresh_look``)."""
        self._looked = (-math.inf, 0)
        """(``time.perf_counter()`` before it was sent, HIGHESTMODSEQ it found): the latest
        read of the mailbox's row by a command here (see ``told_since``)."""
        self._told_count = 0
        """Events of any kind told so far."""
        self._claimed_below = 0
        """Every UID below this one was claimed for \\Recent (see ``claim_recent``)."""
        self._texts_ready = False
        """Every message has its texts (the backfill passed them): no need to check."""
        self._offered: tuple[int, int, float, Sequence[Any]] | None = None
        """What ``offer`` was given: ``_set_told``, ``_told_count``, when it was sent, the row."""

    # -- reading ------------------------------------------------------------------------

    def offer(self, row: Sequence[Any], sent: float) -> None:
        """The status columns (``reads.look_columns``) read as the mailbox was opened, by a
        read sent at ``sent`` with nothing told since: the next ``status()`` answers from
        them, if it comes soon and nothing is told before it."""
        self._offered = (self._set_told, self._told_count, sent, row)

    async def status(self) -> MailboxStatus:
        """One transaction: the status and, as of the same read, what the rest of a SELECT
        asks next (``uids``, ``claim_recent``, ``first_unseen``), kept for those calls; no
        transaction when the one that opened the mailbox read them (``offer``)."""
        offered, self._offered = self._offered, None
        known = self._uid_list or self._backend.uid_lists.get(self._key)
        if offered is not None:
            set_told, told, sent, row = offered
            fresh = (set_told, told) == (self._set_told, self._told_count)
            found = reads.look_of(row, known) if fresh and _soon(sent) else None
            if found is not None:
                return self._took(found, (set_told, told), sent)
        told_now = (self._set_told, self._told_count)
        sent = time.perf_counter()
        looked: reads.Look = await self._backend.db.run(
            reads.look, self.id, known, quick=_small(known)
        )
        return self._took(looked, told_now, sent)

    def _took(self, found: reads.Look, told: tuple[int, int], sent: float) -> MailboxStatus:
        """``found`` (read at ``sent``, when ``told`` events had been told) becomes what the
        rest of a SELECT reads."""
        self._looked_at(sent, found.status.highestmodseq)
        self._look = (*told, found)
        self._uids_taken = self._unseen_taken = False
        if found.uids is not None:
            self._keep(found.uids)
        if found.all_claimed:
            self._claimed_below = max(self._claimed_below, found.status.uidnext)
        return found.status

    @property
    def _key(self) -> tuple[int, int, int]:
        return (self.id, self.account_id, self.uidvalidity)

    def _keep(self, found: reads.UidList) -> None:
        """``found`` becomes the list every session of the mailbox starts from, unless the
        one kept already is newer."""
        if self._uid_list is None or found.modseq >= self._uid_list.modseq:
            self._uid_list = found
            self._backend.uid_lists.put((self.id, self.account_id, self.uidvalidity), found)

    def _fresh_look(self, flags_too: bool) -> reads.Look | None:
        """The last ``status()`` read, when no message came or went (nor, ``flags_too``,
        changed its flags) as told here since it started."""
        if self._look is None:
            return None
        set_told, told, found = self._look
        if set_told != self._set_told or (flags_too and told != self._told_count):
            return None
        return found

    async def uids(self) -> tuple[int, ...]:
        """From the list kept for every session of the mailbox in this process: what
        changed since it was read is read (an indexed look when nothing did).  That list
        itself (a tuple, shared): no copy per SELECT.  The backend keeps it after this
        object goes too (``reads.KeptUidLists``)."""
        found = self._fresh_look(flags_too=False)
        if found is not None and found.uids is not None and not self._uids_taken:
            # The status just read brought the list up to date, and no message came or
            # went since (as told here): the list as of that read (a change made meanwhile
            # is an event the view will get).
            self._uids_taken = True
            return found.uids.uids
        self._uids_taken = True
        kept = self._backend.uid_lists
        key = (self.id, self.account_id, self.uidvalidity)
        known = self._uid_list or kept.get(key)
        read: reads.UidList = await self._backend.db.run(
            reads.uids_since, self.id, known, quick=known is not None and _small(known)
        )
        self._keep(read)
        return read.uids

    async def first_unseen(self) -> int | None:
        """``IFirstUnseen``: from the runs the status read found (nothing told since), else
        one read (the runs, or the first unseen row)."""
        found = None if self._unseen_taken else self._fresh_look(flags_too=True)
        self._unseen_taken = True
        if found is not None and found.unseen_known:
            return found.first_unseen
        first: int | None = await self._backend.db.run(reads.first_unseen, self.id, quick=True)
        return first

    async def fetch(self, uids: Sequence[int]) -> list[MessageMeta]:
        backend = self._backend
        sent = time.perf_counter()
        metas, self._readahead, highest = await backend.db.run(
            reads.fetch_with_sizes, self.id, list(uids), backend.zones, quick=_few(uids)
        )
        if highest is not None:
            self._looked_at(sent, highest)
        return metas

    async def fetch_flags(self, uids: Sequence[int]) -> list[MessageMeta]:
        """``IFlagsMailbox``: the ``mail`` rows alone, no parsed message loaded."""
        backend = self._backend
        metas: list[MessageMeta] = await backend.db.run(
            reads.fetch_flags, self.id, list(uids), backend.zones, quick=_few(uids)
        )
        return metas

    async def sort_keys(self, uids: Sequence[int], names: Sequence[str]) -> SortKeys:
        """One query in a database thread (see the module ``sortkeys``)."""
        keys: SortKeys = await self._backend.db.run(sortkeys.read, self.id, list(uids), names)
        return keys

    async def content(self, uid: int) -> bytes:
        raw = self._raw.get(uid)
        if raw is not None:
            return raw
        return await self._load(uid)

    async def _load(self, uid: int) -> bytes:
        window = self._window(uid)
        found: dict[int, bytes] = await self._backend.db.run(reads.contents, self.id, window)
        self._raw = found
        try:
            return found[uid]
        except KeyError:
            raise KeyError(uid) from None

    def _window(self, uid: int) -> list[int]:
        """``uid`` and the next UIDs the latest fetch() returned, within the read-ahead bounds."""
        ahead = self._readahead
        i = bisect_left(ahead, (uid, 0))
        if i >= len(ahead) or ahead[i][0] != uid:
            return [uid]
        window: list[int] = []
        total = 0
        for next_uid, size in ahead[i : i + READAHEAD_MESSAGES]:
            if window and total + size > READAHEAD_BYTES:
                break
            window.append(next_uid)
            total += size
        return window

    async def search(
        self, query: SearchProgram, uids: Sequence[int]
    ) -> list[int] | Narrowed | None:
        """The common keys in SQL, HEADER of other fields narrowed down; None (the engine
        evaluates) for the rest.

        ``uids`` ascend (the session's view); they are matched against the rows where the
        query runs, in a database thread unless there are few (``QUICK_VIEW``): a tuple
        (the UID list SELECT gave out, which nobody changes) as it is, a list (a view may
        change its own while the query runs) copied here.
        """
        if not uids:
            return []
        backend = self._backend
        sent = time.perf_counter()
        found: search.Answer = await backend.db.run(
            search.answer,
            self.id,
            query,
            backend.db.dialect.find,
            uids if isinstance(uids, tuple) else list(uids),
            backend.text_search,
            self._texts_ready,
            backend.kept_answers,
            quick=len(uids) <= QUICK_VIEW,
        )
        if found.highestmodseq is not None:
            self._looked_at(sent, found.highestmodseq)
        if found.uids is not None and found.texts:
            self._texts_ready = True  # messages arriving from now on bring their texts
        if found.narrowed and found.uids is not None:
            return Narrowed(found.uids)
        return found.uids

    async def changes_since(self, modseq: int) -> Changes:
        backend = self._backend
        result: Changes = await backend.db.run(reads.changes_since, self.id, modseq, backend.zones)
        return result

    # -- changing -----------------------------------------------------------------------

    async def append(
        self, message: bytes, flags: frozenset[str], internaldate: datetime | None, origin: object
    ) -> AppendResult:
        """Parse once, here; the row keeps what FETCH and SEARCH need."""
        (result,) = await self.append_many([NewMessage(message, flags, internaldate)], origin)
        return result

    async def append_many(self, batch: Sequence[NewMessage], origin: object) -> list[AppendResult]:
        """Every message in one transaction: all stored, or none."""
        backend = self._backend
        if len(batch) == 1 and len(batch[0].message) <= PARSE_IN_THREAD:
            incoming = [_prepared(batch[0])]
        else:  # a big message, or a batch (MULTIAPPEND, a burst): not in one reactor turn
            incoming = await backend.in_thread(lambda: [_prepared(new) for new in batch])
        stored = await backend.db.run(
            messages.append_all, self.id, incoming, backend.sender, write=True
        )
        for _, _, modseq in stored[:-1]:
            self._told(modseq)  # each message has a modseq of its own; ``added`` the last
        self.added([uid for _, uid, _ in stored], stored[-1][2], origin)
        backend.grew(len(stored))
        return [AppendResult(validity, uid) for validity, uid, _ in stored]

    async def store(
        self,
        uids: Sequence[int],
        mode: StoreMode,
        flags: frozenset[str],
        origin: object,
        unchangedsince: int | None = None,
    ) -> StoreResult:
        """Messages whose flags end up the same keep their modseq and are not reported."""
        backend = self._backend
        sent = time.perf_counter()
        done: messages.Stored = await backend.db.run(
            messages.store_and_show,
            self.id,
            list(uids),
            mode,
            flags - {RECENT},
            unchangedsince,
            backend.sender,
            write=True,
            flags_only=True,
            quick=_few(uids),
        )
        changed = done.changed
        if changed:
            self.flags_changed(changed, origin, changed[0].modseq)
        if done.highestmodseq is not None:
            self._looked_at(sent, done.highestmodseq)
        return StoreResult(changed, done.failed, done.unchanged)

    async def copy(self, uids: Sequence[int], destination: str, origin: object) -> CopyResult:
        return await self._transfer(uids, destination, origin, move=False)

    async def move(self, uids: Sequence[int], destination: str, origin: object) -> CopyResult:
        return await self._transfer(uids, destination, origin, move=True)

    async def _transfer(
        self, uids: Sequence[int], destination: str, origin: object, move: bool
    ) -> CopyResult:
        backend = self._backend
        done: messages.Transfer = await backend.db.run(
            hierarchy.copy_messages,
            self.account_id,
            self.id,
            list(uids),
            destination,
            move,
            backend.sender,
            write=True,
        )
        backend.transferred(done, origin)
        return CopyResult(done.uidvalidity, done.pairs)

    async def expunge(self, uids: Sequence[int] | None, origin: object) -> list[int]:
        backend = self._backend
        gone, modseq = await backend.db.run(
            messages.expunge,
            self.id,
            None if uids is None else list(uids),
            backend.sender,
            write=True,
        )
        self.expunged(gone, modseq, origin)
        return list(gone)

    async def catch_up(self, since: float | None = None) -> None:
        """``ISharedMailbox``: see ``SqlBackend.catch_up``."""
        await self._backend.catch_up(self, since)

    def _looked_at(self, sent: float, highestmodseq: int) -> None:
        """A read sent at ``sent`` (``time.perf_counter()``) found ``highestmodseq``."""
        if sent > self._looked[0]:
            self._looked = (sent, highestmodseq)

    def told_since(self, since: float) -> bool:
        """Whether the listeners were told of every change committed before ``since``, as a
        read of the mailbox's row sent after it shows: the HIGHESTMODSEQ it found (every
        change committed before it was read) told already.  (The reads of SELECT, FETCH,
        SEARCH and the usual STORE: the command's end then needs no look of its own.)"""
        sent, highestmodseq = self._looked
        return sent >= since and highestmodseq <= self.synced

    async def claim_recent(self) -> list[int]:
        """Nothing to claim, without a read, while every UID known here is below a UIDNEXT
        under which a ``status()`` read found all claimed (claims are never undone, and a
        message added since is claimed when its event comes).  Else a read first: mostly
        there is nothing to claim (a write transaction would take SQLite's write lock,
        PostgreSQL's row lock, each time).  Whatever the UID list read before this holds
        is below the UIDNEXT read here: none of it is left unclaimed when the read finds
        nothing."""
        known = self._uid_list
        top = max(self.top_uid, known.uids[-1] if known is not None and known.uids else 0)
        if top < self._claimed_below:
            return []
        db = self._backend.db
        if not await db.run(messages.unclaimed, self.id, quick=True):
            return []
        result: list[int] = await db.run(messages.claim_recent, self.id, write=True)
        return result

    # -- listeners ----------------------------------------------------------------------

    def _told(self, modseq: int) -> None:
        """The change at ``modseq`` is being told; ``synced`` follows when no gap is left."""
        if modseq <= self.synced:
            return
        seen = self._seen
        seen.add(modseq)
        while self.synced + 1 in seen:
            self.synced += 1
            seen.discard(self.synced)

    def caught_up(self, changes: Changes) -> None:
        """Tell what changed since ``synced`` (read from the tables; the listeners drop what
        they heard already); the modseqs up to ``changes.highestmodseq`` are all told."""
        top = self.top_uid
        added = [m.uid for m in changes.changed if m.uid > top]
        changed = [FlagChange(m.uid, m.flags, m.modseq) for m in changes.changed if m.uid <= top]
        if changes.vanished:
            self.expunged(changes.vanished, changes.highestmodseq, None)
        self.flags_changed(changed, None)
        if added and not any(held[0][0] < added[0] for held in self._held):
            # Every UID below the first one read was told, or expunged (UIDs are taken in
            # commit order): none is still on its way, so what was read is not held back
            # for UIDs that never come.  (Above the last one, some may still be on theirs.)
            self.top_uid = max(self.top_uid, added[0] - 1)
        self.added(added, changes.highestmodseq, None, remote=True)
        if changes.highestmodseq > self.synced:
            self.synced = changes.highestmodseq
            self._seen = {m for m in self._seen if m > self.synced}

    def added(self, uids: Sequence[int], modseq: int, origin: object, remote: bool = False) -> None:
        """Messages arrived (here or, ``remote``, through another process): tell the listeners.

        A remote report of UIDs already reported (after a resynchronisation) is dropped.
        """
        self._told(modseq)
        if uids:
            self._set_told += 1
            self._told_count += 1
            self._backend.told += 1
            self._held.append((sorted(uids), origin, remote))
            self._release(wait=True)

    def _release(self, wait: bool) -> None:
        """Tell the held events that follow on from ``top_uid``; all of them unless ``wait``."""
        held = self._held
        held.sort(key=lambda item: item[0][0])
        while held and not (wait and held[0][0][0] > self.top_uid + 1):
            uids, origin, remote = held.pop(0)
            fresh = [uid for uid in uids if uid > self.top_uid] if remote else uids
            self.top_uid = max(self.top_uid, uids[-1])
            if fresh:
                self.listeners.added(self, fresh, origin)
        timer = self._hold_timer
        if held and timer is None:
            clock: Any = self._backend.reactor
            self._hold_timer = clock.callLater(HOLD_SECONDS, self._held_too_long)
        elif not held and timer is not None:
            self._hold_timer = None
            if timer.active():
                timer.cancel()

    def _held_too_long(self) -> None:
        self._hold_timer = None
        self._release(wait=False)

    def expunged(self, uids: Sequence[int], modseq: int, origin: object) -> None:
        self._told(modseq)
        if uids:
            self._set_told += 1
            self._told_count += 1
            self._backend.told += 1
        for uid in uids:
            self._raw.pop(uid, None)
        self.listeners.expunged(self, list(uids), origin)

    def flags_changed(
        self, changes: Sequence[FlagChange], origin: object, modseq: int | None = None
    ) -> None:
        """``modseq``: the newest of the changes' modseqs, when the caller knows it (a STORE
        gives all of them one), so a large STORE is not walked again here."""
        if changes:
            self._told_count += 1
            self._backend.told += 1
            for told in {modseq} if modseq is not None else {c.modseq for c in changes}:
                self._told(told)
            self.listeners.flags_changed(self, changes, origin)


def _prepared(new: NewMessage) -> messages.Incoming:
    return messages.Incoming.prepare(new.message, new.flags, new.internaldate)


def _few(uids: Sequence[int]) -> bool:
    return len(uids) <= QUICK_MESSAGES


def _small(known: reads.UidList | None) -> bool:
    """A status read bringing ``known`` up to date is quick (none: the status alone)."""
    return known is None or len(known.uids) <= QUICK_VIEW


def _soon(sent: float) -> bool:
    """Whether a read sent at ``sent`` is recent enough to stand for a status read now."""
    return time.perf_counter() - sent < OFFER_SECONDS
