"""A mailbox's files: reading them into the index, and every change a command makes.

Everything here blocks and runs as one task of the mailbox's lane (see ``io``), so it may
use the uidlist, keywords and index objects freely.  It reads the mailbox's ``Entry``
objects but never changes the ones already handed to the reactor side: it returns a
``Delta`` that the mailbox applies.

Crash safety: a new message is written to ``tmp/`` and fsynced; under the uidlist lock its
record is appended (and fsynced), then it is renamed into ``cur/`` and the directory is
fsynced.  A crash before the rename leaves only a file in ``tmp/`` (never served, removed
after 36 hours as Dovecot does) and perhaps a record without a file (ignored); after it the
message is complete and has its UID.  The index is written last: if a crash loses that
write, the next load finds the file without a row and indexes it again.
"""

from __future__ import annotations

import os
import secrets
import sqlite3
import time
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from datetime import datetime
from itertools import repeat

from twisted.logger import Logger

from mailserv.backends.kit.keptanswers import KeptAnswers, Tag, among, stable
from mailserv.backends.maildir import filenames, search
from mailserv.backends.maildir.filenames import INFO_SEPARATOR, BaseNames
from mailserv.backends.maildir.files import (
    CUR,
    NEW,
    TMP,
    MailboxGone,
    crlf,
    fsync_dir,
    read_crlf,
    write_file,
)
from mailserv.backends.maildir.index import (
    Index,
    flag_set,
    infos_of,
    missing_texts,
    sorting_of,
    texts_of,
)
from mailserv.backends.maildir.keywords import Keywords
from mailserv.backends.maildir.pending import Look
from mailserv.backends.maildir.perms import PRIVATE, Permissions
from mailserv.backends.maildir.reconcile import Reconciler, finish, index_row
from mailserv.backends.maildir.records import (
    Delta,
    Entry,
    FlagUpdate,
    Prepared,
    Snapshot,
    Source,
    file_date,
    shape_of,
    shaped,
    stamp_of,
    tz_minutes,
)
from mailserv.backends.maildir.textrow import TextRow, text_row
from mailserv.backends.maildir.uidlist import UidList
from mailserv.backends.maildir.watch import FLAGS_NOTICE
from mailserv.errors import MailboxNotFound
from mailserv.interfaces import Narrowed
from mailserv.message.info import MessageInfo
from mailserv.message.lazyinfo import is_current, record_of
from mailserv.message.parse import parse_message
from mailserv.message.store import dumps
from mailserv.search import SearchProgram

_log = Logger()

TMP_MAX_AGE = 36 * 3600
SNAPSHOT_MIN = 5000
"""Messages from which a mailbox keeps a snapshot of its index rows when closed."""
RENAME_STEP = 1000
"""Files renamed by a STORE between two chances for the reactor thread to run."""
LOAD_STEP = 5000
"""Entries made at a load between two chances for the reactor thread to run."""
COMPACT_SLACK = 1000
"""Records of expunged files tolerated in dovecot-uidlist before it is rewritten."""


KEPT_UIDS = 100_000
"""UIDs the kept SEARCH answers of one mailbox hold, all together, at most (each
mailbox open has its own)."""


def _tag(db: sqlite3.Connection) -> Tag:
    """What tells the index's set of messages: UIDVALIDITY, the highest UID and the
    modseq of the last removal (a UID is never used again: a message added raises the
    highest UID unless it went again, and every removal is logged with a new modseq).
    Three lookups in an index each; a count of the messages would read them all (0.8 ms
    at 100k)."""
    return tuple(
        db.execute(sql).fetchone()[0]
        for sql in (
            "SELECT value FROM meta WHERE key = 'uidvalidity'",
            "SELECT max(uid) FROM message",
            "SELECT max(modseq) FROM expunged",
        )
    )


def _complete(db: sqlite3.Connection) -> bool:
    """Whether every message of the index has its search row (a message may get it
    later, and it is deleted with the message): an answer read so holds while the
    messages are the same.  Read only when an answer is to be kept."""
    (messages,) = db.execute("SELECT count(*) FROM message").fetchone()
    return bool(db.execute("SELECT count(*) FROM search").fetchone()[0] == messages)


class MailboxDisk:
    """The files, ``dovecot-uidlist``, ``dovecot-keywords`` and index of one mailbox."""

    def __init__(
        self, directory: str, fsync: bool, names: BaseNames, perms: Permissions = PRIVATE
    ) -> None:
        self.directory = directory
        self.fsync = fsync
        self.names = names
        self.perms = perms
        self.uidlist = UidList(directory, fsync, perms)
        self.keywords = Keywords(directory, fsync, perms)
        self.index = Index(directory, fsync)
        self.reconciler = Reconciler(directory, self.uidlist, self.keywords, self.index)
        self.kept = KeptAnswers(KEPT_UIDS)
        """SEARCH answers kept while the index holds the same messages (see search)."""
        self.moving: dict[str, str] = {}
        """Old path to new of the files the last rename task renamed: a reader that took the
        old path from an entry before the task's delta was applied finds the file."""
        self._notice = b""
        """What this process last wrote to ``FLAGS_NOTICE``."""

    def path(self, relative: str) -> str:
        return os.path.join(self.directory, relative)

    def close(self) -> None:
        self.index.close()

    def keep_snapshot(self) -> None:
        """Before the last close: a packed copy of the index's rows, which the next load
        reads instead of the rows when nothing changed meanwhile (``snapshot``)."""
        try:
            self.index.keep_snapshot(SNAPSHOT_MIN, LOAD_STEP)
        except sqlite3.Error as exc:
            _log.warn("No snapshot of {path}: {error}", path=self.directory, error=exc)

    # -- loading and syncing ------------------------------------------------------------

    def load(self, allocate_uidvalidity: Callable[[], int]) -> Snapshot:
        """Open the index and bring it up to date with the files."""
        if not os.path.isdir(self.path(CUR)):
            raise MailboxNotFound(self.directory)
        for sub in (NEW, TMP):
            self.perms.makedirs(self.path(sub))
        self._clean_tmp()
        uidlist = self.uidlist
        uidlist.refresh()
        if not uidlist.exists or not uidlist.uidvalidity:
            with uidlist.lock() as lock:
                uidlist.refresh()
                if not uidlist.exists or not uidlist.uidvalidity:
                    uidlist.create(lock, allocate_uidvalidity())
        self.index.open(uidlist.uidvalidity)
        self.keywords.refresh()
        entries = self._indexed()
        stale = self._stale(entries)
        if stale:  # their files (if any) are taken in again, as files of other programs
            entries = [entry for entry in entries if entry.uid not in stale]
        owed = self._owed(entries)
        known = dict(zip([entry.base for entry in entries], entries, strict=True))
        delta = self.reconciler.run(known, None, sorted(stale))
        live = len(entries) - len(delta.removed) + len(delta.added)
        if len(uidlist.records) > 2 * live + COMPACT_SLACK:
            self._compact({e.base for e in entries} | {e.base for e in delta.added})
        complete = not self.index.missing_texts(1)
        floor = self.index.recent_floor
        return Snapshot(uidlist.uidvalidity, entries, delta, floor, complete, owed, uidlist.guid)

    def _owed(self, entries: list[Entry]) -> list[int]:
        """The UIDs whose files a STORE of many left to rename (``renamer``; a stop or a
        crash before it was done): their entries take the names the files still have, so
        the reconciler finds no change there, and the index's flags hold."""
        rows = self.index.owed()
        if not rows:
            return []
        by_uid = {entry.uid: entry for entry in entries}
        keeps: dict[str, str] = {}
        for row in rows:
            entry = by_uid.get(row.uid)
            if entry is None:
                continue
            keep = keeps.get(row.shape)
            if keep is None:
                keep = keeps[row.shape] = self.keywords.flags(filenames.split(row.shape)[1])[1]
            entry.path, entry.keep = shaped(row.shape, entry.base), keep
        return [row.uid for row in rows]

    def _indexed(self) -> list[Entry]:
        """An entry per index row, at the file name its flags give (the reconciler checks).
        In steps, between which the reactor thread may run (the interpreter lock)."""
        by_name = self.keywords.by_name
        sets: dict[str, frozenset[str]] = {}
        names: dict[str, str] = {}
        entries: list[Entry] = []
        for columns in self.index.columns(LOAD_STEP):
            for text in set(columns.flags).difference(sets):  # few distinct sets of flags
                sets[text] = flags = flag_set(text)
                names[text] = INFO_SEPARATOR + filenames.info_letters(flags, by_name)
            named = map(str.__add__, columns.base, map(names.__getitem__, columns.flags))
            entries += map(
                Entry,
                columns.uid,
                columns.base,
                map(f"{CUR}/".__add__, named),
                map(sets.__getitem__, columns.flags),
                repeat(""),
                columns.modseq,
                columns.size,
                columns.date,
                columns.tz,
            )
            time.sleep(0)
        return entries

    def _stale(self, entries: list[Entry]) -> set[int]:
        """The UIDs of entries whose base has another UID in the uidlist (or none)."""
        records = self.uidlist.records
        bases = [entry.base for entry in entries]
        if list(map(records.get, bases)) == [entry.uid for entry in entries]:
            return set()
        return {entry.uid for entry in entries if records.get(entry.base) != entry.uid}

    def scan(self, known: Mapping[str, Entry], look: Look) -> Delta:
        """Changes since ``known``: of the bases hinted, or of everything (``look.full``);
        with the flags of every rename owed when another process ``indexed`` some.

        When ``dovecot-keywords`` changed, letters we could not map before are looked at
        again (another program may have written a file before naming its keyword)."""
        if not os.path.isdir(self.path(CUR)):
            raise MailboxGone(self.directory)
        hints = None if look.full else look.hints
        indexed = look.indexed
        if self.keywords.refresh() and hints is not None:
            hints = dict(hints)
            for base, entry in known.items():
                if any(letter in self.keywords.by_letter for letter in entry.keep):
                    hints.setdefault(base, set()).add(entry.path)
        if indexed:
            try:
                with open(self.path(FLAGS_NOTICE), "rb") as f:
                    indexed = f.read() != self._notice  # else our own notice
            except FileNotFoundError:
                pass
        return self.reconciler.run(known, hints, [], indexed)

    def prepare(self, message: bytes, flags: frozenset[str], when: datetime | None) -> Prepared:
        """Parse ``message`` and write it to ``tmp/`` (fsynced); no lock needed."""
        raw = crlf(message)
        info = parse_message(raw)
        base = self.names.new(len(message), len(raw))
        tmp = self.path(f"{TMP}/{base}")
        stamp = int(when.timestamp() if when is not None else time.time())
        write_file(tmp, message, self.fsync, stamp, self.perms)
        date = file_date(stamp, tz_minutes(when) if when is not None else 0)
        texts = text_row(raw, info)
        return Prepared(base, tmp, len(raw), date, info, dumps(info), flags, texts=texts)

    def link_in(
        self, sources: Sequence[Source], texts: Mapping[int, TextRow] | None = None
    ) -> list[Prepared]:
        """COPY's first half: hard-link each source file into ``tmp/`` (copy if that fails).

        ``sources`` are (absolute path, entry, flags, info); entries whose file is gone
        are left out of the result.  ``texts``: the search rows of the source's index by its
        UID (:meth:`stored_texts`); a file without one is read and its row made again.
        """
        texts = texts or {}
        prepared = []
        for path, entry, flags, info in sources:
            file_size = filenames.sizes(entry.base)[0]
            try:
                if file_size is None:
                    file_size = os.stat(path).st_size
                base = self.names.new(file_size, entry.size)
                tmp = self.path(f"{TMP}/{base}")
                self._link_or_copy(path, tmp)
            except FileNotFoundError:
                continue
            row = texts.get(entry.uid)
            if row is None:
                try:
                    row = text_row(read_crlf(tmp), info)
                except FileNotFoundError:
                    continue  # removed from tmp/ under us (by a cleaner): as if never linked
            prepared.append(
                Prepared(base, tmp, entry.size, entry.date, info, None, flags, entry.uid, row)
            )
        return prepared

    def _link_or_copy(self, source: str, target: str) -> None:
        try:
            os.link(source, target)
            return
        except FileNotFoundError:
            raise
        except OSError:
            pass  # another file system, or no hard links here
        with open(source, "rb") as f:
            data = f.read()
            st = os.fstat(f.fileno())
        write_file(target, data, self.fsync, st.st_mtime, self.perms)

    def deliver(self, items: Sequence[Prepared]) -> Delta:
        """Give prepared files their UIDs and move them into ``cur/``: now they exist."""
        self.keywords.ensure(flag for item in items for flag in item.flags)
        by_name = self.keywords.by_name
        targets = [
            f"{CUR}/{filenames.join(item.base, filenames.info_letters(item.flags, by_name))}"
            for item in items
        ]
        with self.uidlist.lock():
            uids = self.uidlist.add([item.base for item in items], sync=False)
            entries = [
                Entry(uid, item.base, target, item.flags, "", 0, item.size, *stamp, item.info)
                for uid, item, target, stamp in zip(
                    uids, items, targets, map(stamp_of, (item.date for item in items)), strict=True
                )
            ]
            # The rows before the files: another process watching the mailbox (the server
            # while ``mailserv restore`` or another worker delivers) that sees a file finds
            # its row, with the internal date's offset, instead of parsing the file and
            # taking its mtime (UTC).
            with self.index.transaction():
                modseq = self.index.next_modseq()
                for entry in entries:
                    entry.modseq = modseq
                self.index.insert(
                    (
                        index_row(e),
                        record_of(item.info) if item.blob is None else item.blob,
                        item.texts,
                        item.info,
                    )
                    for e, item in zip(entries, items, strict=True)
                )
            renamed = 0
            try:
                for item, target in zip(items, targets, strict=True):
                    os.rename(item.tmp, self.path(target))
                    renamed += 1
            except OSError:
                with self.index.transaction():  # no rows for files that never came
                    self.index.expunge(uids[renamed:], self.index.next_modseq())
                raise
            # Records and renames made durable together (on a journalling file system the
            # first fsync commits both, the directory's is then nearly free).
            self.uidlist.sync()
            if self.fsync:
                fsync_dir(self.path(CUR))
        return finish(Delta(added=entries, ascending=True), self.index, self.uidlist.next_uid)

    def discard(self, items: Iterable[Prepared]) -> None:
        """Remove prepared files that will not be delivered."""
        for item in items:
            try:
                os.unlink(item.tmp)
            except FileNotFoundError:
                pass

    def set_flags(self, changes: Sequence[tuple[Entry, frozenset[str]]]) -> Delta:
        """Rename each file to carry its new flags; UIDs whose file moved meanwhile fail."""
        self.keywords.ensure(flag for flags in {flags for _, flags in changes} for flag in flags)
        done, failed = self._rename(changes)
        if done:
            with self.index.transaction():
                self._flags_set(done)
        return finish(Delta(updated=done, failed=failed), self.index)

    def set_flags_now(self, changes: Sequence[tuple[Entry, frozenset[str]]]) -> Delta | None:
        """``set_flags`` of a few messages on the reactor thread (a thread's hand-off cost
        a one-message STORE more than its work), or None, with nothing done, when that
        would wait: a keyword needs a letter (the keywords file, under its lock) or
        another process holds the index's write lock."""
        letters = self.keywords.by_name
        for _, flags in changes:
            if any(flag not in letters and not flag.startswith("\\") for flag in flags):
                return None
        with self.index.transaction_now() as began:
            if not began:
                return None
            done, failed = self._rename(changes)
            if done:
                self._flags_set(done)
        return finish(Delta(updated=done, failed=failed), self.index)

    def _flags_set(self, done: Sequence[FlagUpdate]) -> None:
        """The index's part of ``set_flags`` (inside a transaction): one new modseq."""
        modseq = self.index.next_modseq()
        for update in done:
            update.modseq = modseq
        self.index.update_flags(done)
        self.index.settle([update.uid for update in done])

    def owe_flags(self, plan: Mapping[frozenset[str], Sequence[Entry]]) -> Delta:
        """A STORE of many messages (``plan``: the entries by their new flags): their new
        flags in the index, and the renames owed (``renamer`` renames the files after the
        answer; until then they keep their names).  The delta has the UIDs by new flags
        (``Delta.flagged``), no object per message."""
        self.keywords.ensure(flag for flags in plan for flag in flags)
        groups: dict[frozenset[str], list[int]] = {}
        shapes: dict[str, list[int]] = {}
        for flags, entries in plan.items():
            groups[flags] = [entry.uid for entry in entries]
            for entry in entries:
                shapes.setdefault(shape_of(entry.path, entry.base), []).append(entry.uid)
        with self.index.transaction():
            modseq = self.index.next_modseq()
            for flags, uids in groups.items():
                self.index.set_flags(flags, modseq, uids)
            self.index.owe(shapes)
        self._notice = f"{os.getpid()} {self.index.highestmodseq} {secrets.token_hex(4)}".encode()
        notice = self.path(f"{TMP}/.{FLAGS_NOTICE}.{secrets.token_hex(8)}")
        try:  # another process sharing the mailbox takes the flags from the index now
            write_file(notice, self._notice, False, None, self.perms)
            os.replace(notice, self.path(FLAGS_NOTICE))
        except OSError as exc:
            _log.warn("No notice of flags in {path}: {error}", path=self.directory, error=exc)
        return finish(Delta(flagged=groups), self.index)

    def rename_owed(self, entries: Sequence[Entry]) -> Delta:
        """Some of the renames owed: each file gets the name its entry's flags give, and
        its row in ``renames`` goes (a file gone meanwhile: another program's change wins,
        a scan finds it; the UID is in ``failed``)."""
        done, failed = self._rename([(entry, entry.flags) for entry in entries])
        with self.index.transaction():
            self.index.settle([entry.uid for entry in entries])
        return Delta(updated=done, failed=failed)

    def _rename(
        self, changes: Sequence[tuple[Entry, frozenset[str]]]
    ) -> tuple[list[FlagUpdate], list[int]]:
        """Give each file the name of its new flags: the updates (modseq 0), and the UIDs of
        files not found.

        Per file only the rename and a little bookkeeping (a STORE 1:* of 100k): the
        letters are made once per set of flags; the reactor thread may run every
        ``RENAME_STEP`` files (the interpreter lock)."""
        by_name = self.keywords.by_name
        names: dict[tuple[frozenset[str], str], str] = {}
        root = self.directory + os.sep
        self.moving = moving = {}
        done: list[FlagUpdate] = []
        failed: list[int] = []
        for count, (entry, flags) in enumerate(changes, 1):
            name = names.get((flags, entry.keep))
            if name is None:
                letters = filenames.info_letters(flags, by_name, entry.keep)
                name = names[flags, entry.keep] = INFO_SEPARATOR + letters
            target = f"{CUR}/{entry.base}{name}"
            if target != entry.path:
                moving[entry.path] = target
                try:
                    os.rename(root + entry.path, root + target)
                except FileNotFoundError:
                    failed.append(entry.uid)
                    continue
            done.append(FlagUpdate(entry.uid, target, flags, entry.keep, 0))
            if count % RENAME_STEP == 0:
                time.sleep(0)
        return done, failed

    def expunge(self, entries: Sequence[Entry], known: Mapping[str, Entry]) -> Delta:
        """Delete the files (wherever they moved to) and log the UIDs as vanished.

        ``known`` are all the mailbox's entries (to compact the uidlist if need be)."""
        gone: list[int] = []
        missing: list[Entry] = []
        for entry in entries:
            try:
                os.unlink(self.path(entry.path))
                gone.append(entry.uid)
            except FileNotFoundError:
                missing.append(entry)
        if missing:
            listing = self.reconciler.listing()
            for entry in missing:
                rel = listing.get(entry.base)
                if rel is not None:
                    try:
                        os.unlink(self.path(rel))
                    except FileNotFoundError:
                        pass
                gone.append(entry.uid)
        if gone:
            gone.sort()
            with self.index.transaction():
                self.index.expunge(gone, self.index.next_modseq())
            doomed = {entry.base for entry in entries}
            self._compact({base for base in known if base not in doomed})
        return finish(Delta(removed=gone), self.index)

    def flush_texts(self, limit: int) -> bool:
        return self.index.flush_texts(limit)

    def forget_texts(self, limit: int) -> bool:
        """Some texts of messages gone out of the indexes; whether more are owed."""
        return self.index.forget_some(limit)

    def missing_texts(self, limit: int) -> list[int]:
        """As the index's, on a connection of its own (outside the lane)."""
        with self.index.reading() as db:
            return missing_texts(db, limit)

    # -- reading, outside the lane (any thread, a reader connection) -------------------

    def search(
        self, query: SearchProgram, uids: Sequence[int], flag_names: Collection[str]
    ) -> list[int] | Narrowed | None:
        """From the index (any thread).  A :func:`~mailserv.backends.kit.keptanswers.
        stable` query's answer is kept, and given again while the index holds the same
        messages (:func:`_tag`, read in the same snapshot); one only narrowed down is not."""
        with self.index.reading() as db:
            if not uids or not stable(query.key):
                return search.run(db, query, uids, flag_names, self.index.fulltext)
            db.execute("BEGIN")  # the tag and the answer: one snapshot
            tag = _tag(db)
            key = (query.key, uids[0], uids[-1])
            found = self.kept.get(key, tag)
            if found is None:
                whole = range(uids[0], uids[-1] + 1)
                answer = search.run(db, query, whole, flag_names, self.index.fulltext)
                if answer is None:
                    return None
                if isinstance(answer, Narrowed):
                    return Narrowed(among(answer.uids, uids))
                found = answer
                if _complete(db):
                    self.kept.put(key, tag, found)
            return among(found, uids)

    def stored_texts(self, uids: Sequence[int]) -> dict[int, TextRow]:
        """The search rows the index holds for ``uids`` (any thread): a COPY gives them to
        the copies instead of reading and decoding each file again (a MOVE of 20k spent
        most of its seconds there)."""
        with self.index.reading() as db:
            return texts_of(db, uids, self.index.fulltext)

    def load_infos(self, uids: Sequence[int]) -> dict[int, MessageInfo]:
        """The stored infos of ``uids`` that can be read (others: see ``store_info``)."""
        with self.index.reading() as db:
            stored = infos_of(db, uids)
        # Records of an older layout are left out: the caller parses those messages again.
        return {uid: found.lazy() for uid, found in stored.items() if is_current(found.info)}

    def load_sorting(self, uids: Sequence[int]) -> dict[int, bytes]:
        """The ``sorting`` values the index holds for ``uids`` (see ``sortrow``)."""
        with self.index.reading() as db:
            return sorting_of(db, uids)

    def read(self, relative: str) -> bytes:
        try:
            return read_crlf(self.path(relative))
        except FileNotFoundError:
            moved = self.moving.get(relative)  # renamed by a task whose delta is not applied
            if moved is None:
                raise
            return read_crlf(self.path(moved))

    def text_rows(self, files: Sequence[tuple[int, str]]) -> list[tuple[int, TextRow]]:
        """Search rows for messages indexed without them (an index from before the
        full-text index, or one that was dropped): ``files`` are (UID, relative path); a
        file that moved meanwhile is left for a later batch."""
        infos = self.load_infos([uid for uid, _ in files])
        rows: list[tuple[int, TextRow]] = []
        for uid, rel in files:
            try:
                raw = read_crlf(self.path(rel))
            except FileNotFoundError:
                continue
            info = infos.get(uid)
            rows.append((uid, text_row(raw, info if info is not None else parse_message(raw))))
        return rows

    def store_texts(self, rows: Sequence[tuple[int, TextRow]]) -> None:
        """Write rows made by :meth:`text_rows` (of messages still here); in the lane."""
        with self.index.transaction():
            self.index.set_texts(self.index.present(rows))

    def vanished_since(self, modseq: int) -> list[int]:
        return self.index.vanished_since(modseq)

    def set_recent_floor(self, uid: int) -> None:
        self.index.set_recent_floor(uid)

    def claim_recent(self, floor: int) -> int:
        return self.index.claim_recent(floor)

    def store_info(self, uid: int, info: MessageInfo) -> None:
        with self.index.transaction():
            self.index.set_info(uid, dumps(info))

    def store_sorting(self, rows: Sequence[tuple[int, bytes]]) -> None:
        with self.index.transaction():
            self.index.fill_sorting(rows)

    # -- housekeeping ---------------------------------------------------------------------

    def _compact(self, live: set[str]) -> None:
        """Rewrite dovecot-uidlist without the records of expunged files, when they pile up.

        What is kept: the bases we know plus whatever the directories hold (a file renamed
        during the listing is still among the known ones)."""
        uidlist = self.uidlist
        if len(uidlist.records) <= 2 * len(live) + COMPACT_SLACK:
            return
        lock = uidlist.lock()
        lock.acquire()
        try:
            uidlist.refresh()
            uidlist.rewrite(lock, live | self.reconciler.listing().keys())
        finally:
            lock.release()

    def _clean_tmp(self) -> None:
        """Files left in ``tmp/`` by writers that died long ago (Dovecot's 36 hours)."""
        limit = time.time() - TMP_MAX_AGE
        try:
            with os.scandir(self.path(TMP)) as it:
                for item in it:
                    try:
                        if item.is_file() and item.stat().st_mtime < limit:
                            os.unlink(item.path)
                    except OSError:
                        continue
        except FileNotFoundError:
            return
