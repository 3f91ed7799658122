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
import re
import time
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from datetime import datetime

from twisted.logger import Logger

from mailserv.backends.maildir import bulk, filenames, search
from mailserv.backends.maildir.filenames import SYSTEM_LETTERS, BaseNames
from mailserv.backends.maildir.index import Index, Row, infos_of, missing_texts
from mailserv.backends.maildir.keywords import Keywords
from mailserv.backends.maildir.perms import PRIVATE, Permissions
from mailserv.backends.maildir.records import (
    Delta,
    Entry,
    FlagUpdate,
    Prepared,
    Snapshot,
    file_date,
    tz_minutes,
)
from mailserv.backends.maildir.textrow import TextRow, text_row
from mailserv.backends.maildir.uidlist import UidList
from mailserv.errors import MailboxNotFound
from mailserv.message.info import MessageInfo
from mailserv.message.parse import parse_message
from mailserv.message.store import UnknownFormat, dumps, loads
from mailserv.search import SearchProgram

_log = Logger()

CUR, NEW, TMP = "cur", "new", "tmp"
TMP_MAX_AGE = 36 * 3600
COMPACT_SLACK = 1000
"""Records of expunged files tolerated in dovecot-uidlist before it is rewritten."""

_BARE_LF = re.compile(rb"(?<!\r)\n")


class MailboxGone(MailboxNotFound):
    """The mailbox directory disappeared (deleted or renamed by another program)."""


def crlf(raw: bytes) -> bytes:
    """Message bytes with CRLF line ends (Dovecot and MDAs store plain LF)."""
    if raw.count(b"\n") == raw.count(b"\r\n"):
        return raw
    return _BARE_LF.sub(b"\r\n", raw)


def write_file(
    path: str,
    data: bytes,
    fsync: bool,
    mtime: float | None = None,
    perms: Permissions = PRIVATE,
) -> None:
    """Create ``path`` (it must not exist) holding ``data``; on error nothing is left."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, perms.file_mode)
    try:
        perms.apply_fd(fd)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        if mtime is not None:
            os.utime(fd, (mtime, mtime))
        if fsync:
            os.fsync(fd)
    except BaseException:
        os.close(fd)
        os.unlink(path)
        raise
    os.close(fd)


def fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def make_maildir(directory: str, folder: bool, perms: Permissions = PRIVATE) -> None:
    """``cur``/``new``/``tmp`` (and Maildir++'s ``maildirfolder`` marker for folders)."""
    for sub in (CUR, NEW, TMP):
        perms.makedirs(os.path.join(directory, sub))
    if folder:
        marker = os.path.join(directory, "maildirfolder")
        if not os.path.exists(marker):
            fd = os.open(marker, os.O_WRONLY | os.O_CREAT, perms.file_mode)
            try:
                perms.apply_fd(fd)
            finally:
                os.close(fd)


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

    def path(self, relative: str) -> str:
        return os.path.join(self.directory, relative)

    def close(self) -> None:
        self.index.close()

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
        records = uidlist.records
        entries: list[Entry] = []
        stale: list[int] = []
        for row in self.index.rows():
            if records.get(row.base) != row.uid:
                stale.append(row.uid)
                continue
            date = file_date(row.date, row.tz)
            entries.append(Entry(row.uid, row.base, "", row.flags, "", row.modseq, row.size, date))
        known = {entry.base: entry for entry in entries}
        delta = self._reconcile(known, None, stale)
        entries = [entry for entry in entries if entry.path]
        self._compact({e.base for e in entries} | {e.base for e in delta.added})
        complete = not self.index.missing_texts(1)
        return Snapshot(uidlist.uidvalidity, entries, delta, self.index.recent_floor, complete)

    def scan(self, known: Mapping[str, Entry], hints: Mapping[str, set[str]] | None) -> Delta:
        """Changes since ``known``: of the bases in ``hints``, or of everything when None.

        When ``dovecot-keywords`` changed, letters we could not map before are looked at
        again (another program may have written a file before naming its keyword)."""
        if not os.path.isdir(self.path(CUR)):
            raise MailboxGone(self.directory)
        if self.keywords.refresh() and hints is not None:
            hints = dict(hints)
            for base, entry in known.items():
                if any(letter in self.keywords.by_letter for letter in entry.keep):
                    hints.setdefault(base, set()).add(entry.path)
        return self._reconcile(known, hints, [])

    def _reconcile(
        self,
        known: Mapping[str, Entry],
        hints: Mapping[str, set[str]] | None,
        stale: list[int],
    ) -> Delta:
        uidlist = self.uidlist
        if hints is None:
            # Deliveries in progress finish their renames first: every file with a record
            # read here is then in the listing, or expunged.
            try:
                with uidlist.lock():
                    uidlist.refresh()
            except PermissionError:  # a mailbox we may only read: nobody delivers here
                uidlist.refresh()
            present = self._listing()
            bases: Iterable[str] = present.keys() | known.keys()
        else:
            # The records of the files the events name (the events came after them).
            uidlist.refresh()
            present = self._probe(hints, known)
            bases = hints.keys()
        records = uidlist.records
        gone = [b for b in bases if b not in present and (b in known or b in records)]
        if gone:
            # A file renamed while a directory was being read (or after the event we had,
            # a flag change by another process) can be missed: look again.  A message of
            # another process (it has a UID) must not be missed: it would come after
            # higher UIDs, too late for the sessions told of those.
            listing = self._listing()
            present.update((b, listing[b]) for b in gone if b in listing)
        delta = Delta()
        new_files: list[tuple[str, str]] = []
        removed: list[int] = []
        changed: list[FlagUpdate] = []
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
                if not entry.path:  # fresh from the index, not yet seen by anyone
                    entry.path, entry.keep = rel, keep
                    if flags == entry.flags:
                        continue
                update = FlagUpdate(entry.uid, rel, flags, keep, 0)
                if flags != entry.flags:
                    changed.append(update)
                delta.updated.append(update)
        added, blobs, texts = self._adopt(new_files, known)
        missed = {base for base, _ in new_files} - {entry.base for entry in added}
        if missed:
            # Renamed again while we read them: where to now?
            listing = self._listing()
            again = [(base, listing[base]) for base in sorted(missed) if base in listing]
            more, more_blobs, more_texts = self._adopt(again, known)
            added += more
            blobs.update(more_blobs)
            texts.update(more_texts)
        if added or changed or removed or stale:
            with self.index.transaction():
                modseq = self.index.next_modseq()
                for update in changed:
                    update.modseq = modseq
                for entry in added:
                    entry.modseq = modseq
                self.index.insert(
                    (
                        _row(e),
                        blobs[e.base] if e.info is None else dumps(e.info),
                        texts.get(e.base),
                    )
                    for e in added
                )
                self.index.update_flags((u.uid, u.flags, u.modseq) for u in changed)
                self.index.expunge(removed + stale, modseq)
        delta.added = sorted(added, key=lambda e: e.uid)
        delta.removed = sorted(removed)
        if hints is None:
            uidnext = uidlist.next_uid
        else:
            # Not the list's next UID: a record above these may belong to a file not yet
            # renamed in (a delivery in progress), which the UIDNEXT we report must not
            # pass.  Those of files appended and expunged meanwhile count (hinted too).
            uidnext = max((records[b] for b in hints if b in records), default=0) + 1
        return self._finish(delta, uidnext)

    def _finish(self, delta: Delta, uidnext: int = 0) -> Delta:
        """``uidnext``: the UIDNEXT reached, when the task knows a safe one."""
        delta.highestmodseq = self.index.highestmodseq
        delta.uidnext = uidnext
        return delta

    def _listing(self) -> dict[str, str]:
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
        return Entry(0, base, rel, flags, keep, 0, size, file_date(mtime))

    # -- changes made by commands --------------------------------------------------------

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

    def link_in(self, sources: Sequence[tuple[str, Entry, frozenset[str]]]) -> list[Prepared]:
        """COPY's first half: hard-link each source file into ``tmp/`` (copy if that fails).

        ``sources`` are (absolute path, entry, flags); entries whose file is gone are
        left out of the result.
        """
        prepared = []
        for path, entry, flags in sources:
            file_size = filenames.sizes(entry.base)[0]
            try:
                if file_size is None:
                    file_size = os.stat(path).st_size
                base = self.names.new(file_size, entry.size)
                tmp = self.path(f"{TMP}/{base}")
                self._link_or_copy(path, tmp)
            except FileNotFoundError:
                continue
            info = entry.info
            assert info is not None
            try:
                texts = text_row(_read(tmp), info)
            except FileNotFoundError:
                continue  # removed from tmp/ under us (by a cleaner): as if never linked
            prepared.append(
                Prepared(base, tmp, entry.size, entry.date, info, None, flags, entry.uid, texts)
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
            for item, target in zip(items, targets, strict=True):
                os.rename(item.tmp, self.path(target))
            # Records and renames made durable together (on a journalling file system the
            # first fsync commits both, the directory's is then nearly free).
            self.uidlist.sync()
            if self.fsync:
                fsync_dir(self.path(CUR))
        entries = [
            Entry(uid, item.base, target, item.flags, "", 0, item.size, item.date, item.info)
            for uid, item, target in zip(uids, items, targets, strict=True)
        ]
        with self.index.transaction():
            modseq = self.index.next_modseq()
            for entry in entries:
                entry.modseq = modseq
            self.index.insert(
                (_row(entry), item.blob if item.blob is not None else dumps(item.info), item.texts)
                for entry, item in zip(entries, items, strict=True)
            )
        return self._finish(Delta(added=entries), self.uidlist.next_uid)

    def discard(self, items: Iterable[Prepared]) -> None:
        """Remove prepared files that will not be delivered."""
        for item in items:
            try:
                os.unlink(item.tmp)
            except FileNotFoundError:
                pass

    def set_flags(self, changes: Sequence[tuple[Entry, frozenset[str]]]) -> Delta:
        """Rename each file to carry its new flags; UIDs whose file moved meanwhile fail."""
        self.keywords.ensure(flag for _, flags in changes for flag in flags)
        by_name = self.keywords.by_name
        done: list[FlagUpdate] = []
        failed: list[int] = []
        for entry, flags in changes:
            letters = filenames.info_letters(flags, by_name, entry.keep)
            target = f"{CUR}/{filenames.join(entry.base, letters)}"
            if target != entry.path:
                try:
                    os.rename(self.path(entry.path), self.path(target))
                except FileNotFoundError:
                    failed.append(entry.uid)
                    continue
            done.append(FlagUpdate(entry.uid, target, flags, entry.keep, 0))
        if done:
            with self.index.transaction():
                modseq = self.index.next_modseq()
                for update in done:
                    update.modseq = modseq
                self.index.update_flags((u.uid, u.flags, u.modseq) for u in done)
        return self._finish(Delta(updated=done, failed=failed))

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
            listing = self._listing()
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
        return self._finish(Delta(removed=gone))

    def flush_texts(self, limit: int) -> bool:
        return self.index.flush_texts(limit)

    def missing_texts(self, limit: int) -> list[int]:
        """As the index's, on a connection of its own (outside the lane)."""
        db = self.index.reader()
        try:
            return missing_texts(db, limit)
        finally:
            db.close()

    # -- reading, outside the lane (any thread, a connection of its own) ---------------

    def search(
        self, query: SearchProgram, uids: Sequence[int], flag_names: Collection[str]
    ) -> list[int] | None:
        db = self.index.reader()
        try:
            return search.run(db, query, uids, flag_names, self.index.fulltext)
        finally:
            db.close()

    def load_infos(self, uids: Sequence[int]) -> dict[int, MessageInfo]:
        """The stored infos of ``uids`` that can be read (others: see ``store_info``)."""
        db = self.index.reader()
        try:
            blobs = infos_of(db, uids)
        finally:
            db.close()
        found = {}
        for uid, data in blobs.items():
            try:
                found[uid] = loads(data)
            except UnknownFormat:
                continue
        return found

    def read(self, relative: str) -> bytes:
        return _read(self.path(relative))

    def text_rows(self, files: Sequence[tuple[int, str]]) -> list[tuple[int, TextRow]]:
        """Search rows for messages indexed without them (an index from before the
        full-text index, or one that was dropped): ``files`` are (UID, relative path); a
        file that moved meanwhile is left for a later batch."""
        infos = self.load_infos([uid for uid, _ in files])
        rows: list[tuple[int, TextRow]] = []
        for uid, rel in files:
            try:
                raw = _read(self.path(rel))
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

    def store_info(self, uid: int, info: MessageInfo) -> None:
        with self.index.transaction():
            self.index.set_info(uid, dumps(info))

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
            uidlist.rewrite(lock, live | self._listing().keys())
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


def _read(path: str) -> bytes:
    with open(path, "rb") as f:
        return crlf(f.read())


def _needs_uid(entry: Entry, records: Mapping[str, int], used: set[int]) -> bool:
    uid = records.get(entry.base)
    return uid is None or uid in used


def _row(entry: Entry) -> Row:
    return Row(
        entry.uid,
        entry.base,
        entry.flags,
        entry.modseq,
        entry.size,
        int(entry.date.timestamp()),
        tz_minutes(entry.date),
    )
