"""Comparing a mailbox's directories with its index: what other programs changed.

A blocking task of the mailbox's lane (see ``disk``).  Files found without an index row are
parsed (many at once by helper processes, see ``bulk``) and given UIDs from the uidlist;
files that moved are flag changes; files gone are expunges.  The result is a ``Delta`` for
the mailbox to apply.  A file owing a rename (a STORE of many answered before renaming it,
see ``renamer``) at the name the index recorded for it has the index's flags."""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence

from mailserv.backends.maildir import bulk, filenames
from mailserv.backends.maildir.filenames import SYSTEM_LETTERS
from mailserv.backends.maildir.files import CUR, NEW, MailboxGone, crlf
from mailserv.backends.maildir.index import Index, Row
from mailserv.backends.maildir.keywords import Keywords
from mailserv.backends.maildir.records import Delta, Entry, FlagUpdate, shaped
from mailserv.backends.maildir.textrow import TextRow, text_row
from mailserv.backends.maildir.uidlist import UidList
from mailserv.message.lazyinfo import record_of
from mailserv.message.parse import parse_message

STEP = 10000
"""File names taken between two chances for the reactor thread to run."""


class Reconciler:
    """Reconciles one mailbox's files with its uidlist, keywords and index."""

    def __init__(self, directory: str, uidlist: UidList, keywords: Keywords, index: Index) -> None:
        self.directory = directory
        self.uidlist = uidlist
        self.keywords = keywords
        self.index = index

    def path(self, relative: str) -> str:
        return os.path.join(self.directory, relative)

    def run(
        self,
        known: Mapping[str, Entry],
        hints: Mapping[str, set[str]] | None,
        stale: list[int],
        owed: bool = False,
    ) -> Delta:
        """The changes; every rename owed is looked at in a full scan, or when ``owed``."""
        uidlist = self.uidlist
        if hints is None:
            # Deliveries in progress finish their renames first: every file with a record
            # read here is then in the listing, or expunged.
            try:
                with uidlist.lock():
                    uidlist.refresh()
            except PermissionError:  # a mailbox we may only read: nobody delivers here
                uidlist.refresh()
            present, bases = self._differences(known)
        else:
            # The records of the files the events name (the events came after them).
            uidlist.refresh()
            present = self._probe(hints, known)
            bases = set(hints)
        records = uidlist.records
        gone = [b for b in bases if b not in present and (b in known or b in records)]
        if gone:
            # A file renamed while a directory was being read (or after the event we had,
            # a flag change by another process) can be missed: look again.  A message of
            # another process (it has a UID) must not be missed: it would come after
            # higher UIDs, too late for the sessions told of those.
            listing = self.listing()
            present.update((b, listing[b]) for b in gone if b in listing)
        hold, adopted = self._owed(known, present, bases, owed or hints is None)
        delta = Delta(updated=list(adopted))
        new_files: list[tuple[str, str]] = []
        removed: list[int] = []
        changed: list[FlagUpdate] = list(adopted)
        for base in bases:
            rel = present.get(base)
            entry = known.get(base)
            if entry is None:
                if rel is not None:
                    new_files.append((base, rel))
            elif rel is None:
                removed.append(entry.uid)
            elif rel != entry.path or any(c in self.keywords.by_letter for c in entry.keep):
                flags, keep = self._file_flags(rel, entry.flags)
                flags = hold.get(base, flags)
                if not entry.path:  # fresh from the index, not yet seen by anyone
                    entry.path, entry.keep = rel, keep
                    if flags == entry.flags:
                        continue
                update = FlagUpdate(entry.uid, rel, flags, keep, 0)
                if flags != entry.flags:
                    changed.append(update)
                delta.updated.append(update)
        # Modseqs up to here may have been reported by this process: a change of another
        # process with one of them is recorded again with a new one (else a client that
        # was told that HIGHESTMODSEQ would never learn of it).
        floor = self.index.highestmodseq
        stored, new_files = self._stored(new_files, floor)
        added, blobs, texts = self._adopt(new_files, known)
        missed = {base for base, _ in new_files} - {entry.base for entry in added}
        if missed:
            # Renamed again while we read them: where to now?
            listing = self.listing()
            again = [(base, listing[base]) for base in sorted(missed) if base in listing]
            more, more_blobs, more_texts = self._adopt(again, known)
            added += more
            blobs.update(more_blobs)
            texts.update(more_texts)
        changed = self._unrecorded(changed, floor)
        late = [entry for entry in stored if not entry.modseq]
        if added or changed or removed or stale or late:
            with self.index.transaction():
                modseq = self.index.next_modseq()
                for update in changed:
                    update.modseq = modseq
                for entry in added + late:
                    entry.modseq = modseq
                self.index.insert(
                    (
                        index_row(e),
                        blobs[e.base] if e.info is None else record_of(e.info),
                        texts.get(e.base),
                        e.info,
                    )
                    for e in added
                )
                self.index.update_flags(changed)
                self.index.update_flags(late)
                self.index.expunge(removed + stale, modseq)
        delta.added = sorted(added + stored, key=lambda e: e.uid)
        delta.removed = sorted(removed)
        if hints is None:
            uidnext = uidlist.next_uid
        else:
            # Not the list's next UID: a record above these may belong to a file not yet
            # renamed in (a delivery in progress), which the UIDNEXT we report must not
            # pass.  Those of files appended and expunged meanwhile count (hinted too).
            uidnext = max((records[b] for b in hints if b in records), default=0) + 1
        return finish(delta, self.index, uidnext)

    def listing(self) -> dict[str, str]:
        """Every message file by base.  ``new/`` is read first: a file moving to ``cur/``
        meanwhile is then seen in one of them."""
        found: dict[str, str] = {}
        for sub in (NEW, CUR):
            try:
                names = os.listdir(self.path(sub))
            except FileNotFoundError:
                raise MailboxGone(self.directory) from None
            for name in names:
                if not name.startswith("."):
                    found[filenames.split(name)[0]] = f"{sub}/{name}"
        return found

    def _differences(self, known: Mapping[str, Entry]) -> tuple[dict[str, str], set[str]]:
        """Where the files are whose names are not those ``known`` gives (by base), and
        the bases to look at: those and the known ones not found.  Set differences of the
        listings and the known names, no Python work per unchanged file (100k at a load,
        or after a STORE of 100k).  Files whose unmapped letters now name keywords are in
        too."""
        listed = []
        for sub in (NEW, CUR):  # new/ first: a file moving to cur/ meanwhile is seen
            try:
                listed.append((sub, os.listdir(self.path(sub))))
            except FileNotFoundError:
                raise MailboxGone(self.directory) from None
        here: set[str] = set()
        for sub, names in listed:
            for start in range(0, len(names), STEP):
                here.update(map(f"{sub}/".__add__, names[start : start + STEP]))
                time.sleep(0)  # the reactor thread's turn (the interpreter lock)
        expected = {entry.path for entry in known.values()}
        time.sleep(0)
        found: dict[str, str] = {}
        for rel in sorted(here - expected, key=lambda rel: rel.startswith(CUR)):
            name = rel[len(CUR) + 1 :]
            if not name.startswith("."):
                found[filenames.split(name)[0]] = rel  # cur/ wins, as in ``listing``
        bases = set(found)
        bases.update(filenames.split(os.path.basename(rel))[0] for rel in expected - here)
        by_letter = self.keywords.by_letter
        if by_letter:
            for base, entry in known.items():
                if entry.keep and any(c in by_letter for c in entry.keep) and entry.path in here:
                    found.setdefault(base, entry.path)
                    bases.add(base)
        return found, bases

    def _owed(
        self,
        known: Mapping[str, Entry],
        present: Mapping[str, str],
        bases: set[str],
        everything: bool,
    ) -> tuple[dict[str, frozenset[str]], list[FlagUpdate]]:
        """The renames owed of the files looked at (of all when ``everything``).  A file at
        the name the index recorded for it keeps the index's flags: they are held by base
        for the files not where their entries say, else an update when the entry has other
        flags (a STORE of another process sharing the mailbox).  A file elsewhere with other
        flags, or gone, was changed by another program, which wins: its rename is dropped."""
        if everything:
            rows = self.index.owed()
        else:
            rows = self.index.owed([known[b].uid for b in bases if b in known])
        hold: dict[str, frozenset[str]] = {}
        adopted: list[FlagUpdate] = []
        drop: list[int] = []
        for row in rows:
            entry = known.get(row.base)
            if entry is None or entry.uid != row.uid:
                continue
            where = present.get(row.base) if row.base in bases else entry.path
            if where == shaped(row.shape, row.base):
                if where != entry.path:
                    hold[row.base] = row.flags
                elif row.flags != entry.flags:
                    adopted.append(FlagUpdate(row.uid, where, row.flags, entry.keep, 0))
            elif where is None or self._file_flags(where, entry.flags)[0] != row.flags:
                drop.append(row.uid)
        if drop:
            with self.index.transaction():
                self.index.settle(drop)
        return hold, adopted

    def _probe(self, hints: Mapping[str, set[str]], known: Mapping[str, Entry]) -> dict[str, str]:
        """Where each hinted base is now, checking the hinted names (``cur/`` first)."""
        present: dict[str, str] = {}
        for base, names in hints.items():
            candidates = sorted(names, key=lambda rel: not rel.startswith(CUR))
            entry = known.get(base)
            if entry is not None and entry.path and entry.path not in names:
                candidates.append(entry.path)
            for rel in candidates:
                if os.path.lexists(self.path(rel)):
                    present[base] = rel
                    break
        return present

    def _file_flags(self, rel: str, old: frozenset[str]) -> tuple[frozenset[str], str]:
        """Flags a file name says, plus the old keywords that cannot be in a name."""
        letters = filenames.split(os.path.basename(rel))[1]
        flags, keep = self.keywords.flags(letters)
        by_name = self.keywords.by_name
        hidden = {f for f in old if f not in SYSTEM_LETTERS and f not in by_name}
        return flags | hidden, keep

    def _stored(
        self, files: list[tuple[str, str]], floor: int
    ) -> tuple[list[Entry], list[tuple[str, str]]]:
        """Entries of the files another process sharing the mailbox delivered and indexed
        (``--workers N``, ``mailserv restore``), made from their index rows instead of
        parsing the files again: the row keeps the internal date's offset, which the file's
        mtime has lost.  Modseq 0 (a new one is recorded) when theirs is not above ``floor``
        or the file's name now says other flags (another program changed them); and the
        other files."""
        records = self.uidlist.records
        uids = sorted(records[base] for base, rel in files if base in records)
        rows = self.index.stored_rows(uids) if uids else {}
        if not rows:
            return [], files
        stored: list[Entry] = []
        rest: list[tuple[str, str]] = []
        for base, rel in files:
            row = rows.get(records.get(base, 0))
            if row is not None and row.base == base and rel.startswith(CUR):
                flags, keep = self._file_flags(rel, row.flags)
                modseq = row.modseq if row.modseq > floor and flags == row.flags else 0
                stored.append(
                    Entry(row.uid, base, rel, flags, keep, modseq, row.size, row.date, row.tz)
                )
            else:
                rest.append((base, rel))
        return stored, rest

    def _unrecorded(self, changed: list[FlagUpdate], floor: int) -> list[FlagUpdate]:
        """Of the flag changes found, those to record.  The others were made by another
        process sharing the mailbox (``--workers N``), which recorded them: they keep its
        modseq, so every process reports the same one (when above ``floor``).  Removals are
        always logged again: the log's modseq must be above ``floor`` too, and they are few."""
        if not changed:
            return changed
        recorded = self.index.recorded([u.uid for u in changed])
        unrecorded: list[FlagUpdate] = []
        for update in changed:
            have = recorded.get(update.uid)
            if have is not None and have[0] == update.flags and have[1] > floor:
                update.modseq = have[1]
            else:
                unrecorded.append(update)
        return unrecorded

    def _adopt(
        self, files: list[tuple[str, str]], known: Mapping[str, Entry]
    ) -> tuple[list[Entry], dict[str, bytes], dict[str, TextRow]]:
        """Index files another program put here: parse them and find or give their UIDs.

        Returns the entries, for those parsed by helper processes (many files at once),
        their serialised infos (the entries' ``info`` then loads lazily from the index),
        and every file's search row by base."""
        if not files:
            return [], {}, {}
        found: list[Entry] = []
        texts: dict[str, TextRow] = {}

        def parse_here(share: Sequence[tuple[str, str]]) -> None:
            for base, rel in share:
                try:
                    with open(self.path(rel), "rb") as f:
                        data = f.read()
                        mtime = os.fstat(f.fileno()).st_mtime
                except FileNotFoundError:
                    continue  # moved again: its next event will tell where
                raw = crlf(data)
                entry = self._entry(base, rel, len(raw), mtime)
                entry.info = info = parse_message(raw)
                texts[base] = text_row(raw, info)
                found.append(entry)

        blobs: dict[str, bytes] = {}
        for base, rel, size, mtime, blob, row in bulk.parse_shared(
            self.directory, sorted(files), parse_here
        ):
            found.append(self._entry(base, rel, size, mtime))
            blobs[base] = blob
            texts[base] = row
        found.sort(key=lambda entry: entry.base)
        used = {entry.uid for entry in known.values()}
        uidlist = self.uidlist
        uidlist.refresh()
        if any(_needs_uid(e, uidlist.records, used) for e in found):
            with uidlist.lock():
                uidlist.refresh()
                fresh = [e.base for e in found if _needs_uid(e, uidlist.records, used)]
                for base, uid in zip(fresh, uidlist.add(fresh), strict=True):
                    uidlist.records[base] = uid
        for entry in found:
            entry.uid = uidlist.records[entry.base]
            if entry.path.startswith(NEW):
                target = f"{CUR}/{filenames.join(entry.base, filenames.split(entry.path[4:])[1])}"
                try:
                    os.rename(self.path(entry.path), self.path(target))
                    entry.path = target
                except FileNotFoundError:
                    pass  # another reader moved it; the events will follow
        return found, blobs, texts

    def _entry(self, base: str, rel: str, size: int, mtime: float) -> Entry:
        flags, keep = self.keywords.flags(filenames.split(os.path.basename(rel))[1])
        return Entry(0, base, rel, flags, keep, 0, size, int(mtime), 0)

    # -- changes made by commands --------------------------------------------------------


def _needs_uid(entry: Entry, records: Mapping[str, int], used: set[int]) -> bool:
    uid = records.get(entry.base)
    return uid is None or uid in used


def index_row(entry: Entry) -> Row:
    return Row(
        entry.uid,
        entry.base,
        entry.flags,
        entry.modseq,
        entry.size,
        entry.stamp,
        entry.tz,
    )


def finish(delta: Delta, index: Index, uidnext: int = 0) -> Delta:
    """``delta`` with the index's HIGHESTMODSEQ and ``uidnext``: the UIDNEXT reached, when
    the task knows a safe one."""
    delta.highestmodseq = index.highestmodseq
    delta.uidnext = uidnext
    return delta
