"""What the reactor thread knows of one maildir mailbox, shared by its sessions.

An ``Entry`` per message by UID and by file base, the counts STATUS and SELECT answer from
(``Tally``), the flag spellings seen, UIDNEXT, HIGHESTMODSEQ and the \\Recent floor.  It
changes only by ``apply``, in the mailbox's lane."""

from __future__ import annotations

import gc
import time
from bisect import bisect_left
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from operator import attrgetter

from mailserv.backends.kit import Tally, flagsets
from mailserv.backends.kit.flagchanges import changes_in_steps
from mailserv.backends.maildir.records import DAY, Delta, Entry, Snapshot
from mailserv.interfaces import SEEN, FlagChange, MailboxStatus, StoreMode
from mailserv.message.ids import OBJECT_ID
from mailserv.search import SearchKey

STEP = 250
"""Flag updates or removals applied between two chances for other work to run."""
BULK_STEP = 1000
"""Messages of a ``Delta.flagged`` given their new flags between two such chances (a
few attribute writes each; the indexes of flags follow per group, in C)."""
LOAD_STEP = 5000
"""Entries counted at a load between two chances for the reactor thread to run."""
ADD_STEP = 1000
"""New entries of a ``Delta.ascending`` added between two such chances (a COPY of 20k
added at once held the reactor 15-30 ms)."""


@dataclass(slots=True)
class Applied:
    """What ``apply`` changed, for the listeners."""

    added: list[int] = field(default_factory=list)
    changes: Sequence[FlagChange] = field(default_factory=list)
    removed: list[int] = field(default_factory=list)


class MailboxState:
    def __init__(self, uidvalidity: int = 0, floor: int = 1) -> None:
        self.uidvalidity = uidvalidity
        self.mailboxid: str | None = None
        """The uidlist's mailbox GUID: made with the folder, moved along by RENAME."""
        self.entries: dict[int, Entry] = {}
        self.by_base: dict[str, Entry] = {}
        self._ordered = True
        self._listed: tuple[int, ...] | None = None
        """``uids()``'s answer, shared by every SELECT until an entry comes or goes."""
        self.uidnext = 1
        self.modseq = 1
        self.floor = floor
        """UIDs from here on are \\Recent for the next session to claim them."""
        self.tally = Tally()
        self.flag_names: set[str] = set()
        """Every flag spelling messages have had since loading (SEARCH's keyword spellings)."""
        self.having: dict[str, set[int]] = {}
        """The UIDs having each flag spelling (flag searches and SELECT's first unseen
        without a look at every message)."""
        self.on_day: dict[int, set[int]] = {}
        """The UIDs by their internal date's day (``Entry.day``): SINCE, BEFORE and ON."""

    @classmethod
    def of(cls, snapshot: Snapshot) -> MailboxState:
        """The state of a freshly read mailbox, without its ``delta`` (an I/O task: the
        state is new, nobody else sees it yet; it lets the reactor thread run now and then)."""
        state = cls(snapshot.uidvalidity, snapshot.recent_floor)
        state.mailboxid = snapshot.guid if OBJECT_ID.fullmatch(snapshot.guid) else None
        listed = snapshot.entries
        uids = list(map(attrgetter("uid"), listed))
        state.entries = dict(zip(uids, listed, strict=True))
        state.by_base = dict(zip(map(attrgetter("base"), listed), listed, strict=True))
        state._ordered = uids == sorted(uids)
        groups: defaultdict[frozenset[str], list[int]] = defaultdict(list)
        days: defaultdict[int, set[int]] = defaultdict(set)
        for start in range(0, len(listed), LOAD_STEP):
            for entry in listed[start : start + LOAD_STEP]:
                groups[entry.flags].append(entry.uid)
                days[(entry.stamp + 60 * entry.tz) // DAY].add(entry.uid)
            time.sleep(0)  # the reactor thread's turn (the interpreter lock)
        state.on_day = dict(days)
        having, unseen = state.having, []
        for flags, members in groups.items():
            if SEEN not in flags:
                unseen += members
            for flag in flags:
                having.setdefault(flag, set()).update(members)
        floor = state.floor
        ordered = state._ordered
        recent = uids[bisect_left(uids, floor) :] if ordered else (u for u in uids if u >= floor)
        state.tally.add_counted(sum(map(attrgetter("size"), listed)), unseen, recent)
        state.flag_names.update(having)
        return state

    def status(self) -> MailboxStatus:
        return self.tally.status(
            self.uidvalidity, self.uidnext, len(self.entries), self.modseq, self.mailboxid
        )

    def uids(self) -> tuple[int, ...]:
        """Ascending; the same tuple until an entry comes or goes (no copy per SELECT)."""
        if self._listed is None:
            if not self._ordered:
                self.entries = dict(sorted(self.entries.items()))
                self._ordered = True
            self._listed = tuple(self.entries)
        return self._listed

    def known(self, uids: Iterable[int]) -> list[Entry]:
        """The entries of ``uids`` still here, ascending."""
        entries = self.entries
        return [entries[uid] for uid in sorted(set(uids)) if uid in entries]

    def plan(
        self, uids: Iterable[int], mode: StoreMode, flags: frozenset[str], since: int | None
    ) -> tuple[dict[frozenset[str], list[Entry]], list[int]]:
        """A STORE's plan (as ``plan_store``'s): the entries whose flags change, by their
        new flags (a few lists, not an object per message that the collector would walk
        over), ascending; and the UIDs UNCHANGEDSINCE refuses."""
        groups: dict[frozenset[str], list[Entry]] = {}
        failed: list[int] = []
        after: dict[frozenset[str], list[Entry] | None] = {}  # old flags -> their group
        for entry in self.known(uids):
            if since is not None and entry.modseq > since:
                failed.append(entry.uid)
                continue
            old = entry.flags
            try:
                group = after[old]
            except KeyError:
                new = mode.apply(old, flags)
                group = after[old] = None if new == old else groups.setdefault(new, [])
            if group is not None:
                group.append(entry)
        return groups, failed

    def path_of(self, uid: int) -> str:
        """The file of ``uid`` relative to the mailbox ("" when unknown)."""
        entry = self.entries.get(uid)
        return entry.path if entry is not None else ""

    def apply(self, delta: Delta) -> Applied:
        done = Applied()
        for _step in self.steps(delta, done):
            pass
        return done

    def steps(self, delta: Delta, done: Applied) -> Iterator[None]:
        """``apply`` in steps of at most ``STEP`` flag updates or removals, into ``done``:
        the caller may let other work run at each ``yield`` (a STORE or EXPUNGE of 100k
        messages).  Meanwhile readers see some of the changes made and others not, as if
        they had come in several deltas; UIDNEXT and HIGHESTMODSEQ move at the end (but
        for new entries, ``ADD_STEP`` at a time when ``Delta.ascending``: UIDNEXT and
        HIGHESTMODSEQ follow them)."""
        entries, by_base, tally = self.entries, self.by_base, self.tally
        added = delta.added
        if added and delta.ascending:
            for start in range(0, len(added), ADD_STEP):
                if start:
                    yield
                self._add(added[start : start + ADD_STEP], done)
        elif added:
            self._add(added, done)
        if delta.flagged:
            yield from self._regroup(delta.flagged, delta.highestmodseq, done)
        changes: list[FlagChange] = []
        names = self.flag_names
        updated = delta.updated
        for start in range(0, len(updated), STEP):
            if start:
                yield
            for update in updated[start : start + STEP]:
                known = entries.get(update.uid)
                if known is None:
                    continue
                known.path, known.keep = update.path, update.keep
                flags = update.flags
                if update.modseq and flags != known.flags:
                    tally.reflag(known.flags, flags, (known.uid,))
                    if not flags <= names:
                        names |= flags
                    self._reflag(known.uid, known.flags, flags)
                    known.flags, known.modseq = flags, update.modseq
                    changes.append(FlagChange(known.uid, flags, update.modseq))
        if changes:
            done.changes = [*done.changes, *changes] if done.changes else changes
        removed = delta.removed
        for start in range(0, len(removed), STEP):
            if start or updated:
                yield
            for uid in removed[start : start + STEP]:
                gone = entries.pop(uid, None)
                if gone is None:
                    continue
                self._listed = None
                if by_base.get(gone.base) is gone:
                    del by_base[gone.base]
                tally.remove(uid, gone.size)
                self._reflag(uid, gone.flags, frozenset())
                self._undate(uid, gone.day)
                done.removed.append(uid)
        self.modseq = max(self.modseq, delta.highestmodseq)
        self.uidnext = max(self.uidnext, delta.uidnext)

    def _add(self, added: Sequence[Entry], done: Applied) -> None:
        """New entries (a COPY of 20k brings 20k): the counts and the sets of UIDs by flag
        and by day follow per group of equal flags or days, in C (not a few calls per
        message)."""
        entries = self.entries
        seen: set[int] = set()
        fresh = []
        for entry in added:
            if entry.uid not in entries and entry.uid not in seen:
                seen.add(entry.uid)
                fresh.append(entry)
        if not fresh:
            return
        uids = [entry.uid for entry in fresh]
        last = next(reversed(entries)) if entries else 0
        if uids[0] < last or uids != sorted(uids):
            self._ordered = False
        entries.update(zip(uids, fresh, strict=True))
        self._listed = None
        self.by_base.update(zip(map(attrgetter("base"), fresh), fresh, strict=True))
        groups: defaultdict[frozenset[str], list[int]] = defaultdict(list)
        days: defaultdict[int, list[int]] = defaultdict(list)
        for entry in fresh:
            groups[entry.flags].append(entry.uid)
            days[(entry.stamp + 60 * entry.tz) // DAY].append(entry.uid)
        unseen: list[int] = []
        for flags, members in groups.items():
            if SEEN not in flags:
                unseen += members
            flagsets.moved(self.having, members, frozenset(), flags)
            self.flag_names |= flags
        for day, members in days.items():
            self.on_day.setdefault(day, set()).update(members)
        floor = self.floor
        recent = [uid for uid in uids if uid >= floor]
        self.tally.add_counted(sum(map(attrgetter("size"), fresh)), unseen, recent)
        self.uidnext = max(self.uidnext, max(uids) + 1)
        self.modseq = max(self.modseq, max(map(attrgetter("modseq"), fresh)))
        told = done.added
        after = not told or told[-1] < uids[0]
        told.extend(uids)
        if not (after and self._ordered):
            told.sort()

    def _regroup(
        self, flagged: dict[frozenset[str], list[int]], modseq: int, done: Applied
    ) -> Iterator[None]:
        """``steps`` for ``Delta.flagged``, ``BULK_STEP`` messages at a time: their entries
        take the new flags, then the counts and the sets of UIDs by flag follow per pair
        of old and new sets (a few set operations in C), so each step leaves a consistent
        state; the changes are made at the end, in steps too (``changes_in_steps``)."""
        entries = self.entries
        changed: dict[frozenset[str], list[int]] = {}
        for new, uids in flagged.items():
            now: list[int] = []
            for start in range(0, len(uids), BULK_STEP):
                if start:
                    yield
                was: dict[frozenset[str], list[int]] = {}
                for uid in uids[start : start + BULK_STEP]:
                    known = entries.get(uid)
                    if known is None or known.flags == new:
                        continue
                    members = was.get(known.flags)
                    if members is None:
                        members = was[known.flags] = []
                    members.append(uid)
                    known.flags, known.modseq = new, modseq
                    now.append(uid)
                self._moved(was, new)
            if now:
                changed[new] = now
            yield
        if changed:
            done.changes = yield from changes_in_steps(changed, modseq)

    def _moved(self, was: dict[frozenset[str], list[int]], new: frozenset[str]) -> None:
        """The messages of ``was`` (UIDs by their old flags) now have ``new``: the counts
        and the sets of UIDs by flag follow."""
        having, tally = self.having, self.tally
        for old, members in was.items():
            tally.reflag(old, new, members)
            flagsets.moved(having, members, old, new)
        if was:
            self.flag_names |= new

    def _reflag(self, uid: int, old: frozenset[str], new: frozenset[str]) -> None:
        flagsets.reflag(self.having, uid, old, new)

    def _undate(self, uid: int, day: int) -> None:
        flagsets.undate(self.on_day, uid, day)

    def quick_search(self, key: SearchKey, uids: Sequence[int]) -> list[int] | None:
        """The UIDs among ``uids`` (ascending) matching ``key``, when it tests nothing but
        flags and internal dates (UNSEEN, FLAGGED, NOT DELETED, SINCE, BEFORE, ON, their ORs
        and ANDs): from ``having``, ``on_day`` and, for UNSEEN, the tally's unseen UIDs
        (:mod:`mailserv.backends.kit.flagsets`).  None for any other key (the index
        answers)."""
        # (file names spell \\Seen one way only)
        unseen = flagsets.unseen_nodes(key, self.tally.unseen_uids)
        return flagsets.search(key, uids, self.having, self.on_day, self.entries, unseen)

    def first_unseen(self) -> int | None:
        """The lowest UID without \\Seen (``IFirstUnseen``): a pass over the UIDs in
        order that stops there."""
        return flagsets.first_without(
            self.having, SEEN, self.entries if self._ordered else self.uids()
        )

    def clear(self) -> None:
        self.entries.clear()
        self._listed = None
        self.by_base.clear()
        self.having.clear()
        self.on_day.clear()
        self.tally.clear()


@contextmanager
def uncollected() -> Iterator[None]:
    """While a mailbox loads (100k new objects that all live on): no pass of the cyclic
    garbage collector over them, each holding the reactor thread too (the interpreter
    lock).  Reference counting frees as usual; the collector runs again after."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()
