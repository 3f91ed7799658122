"""The per-mailbox index: what SELECT and FETCH need without opening message files.

A small SQLite file, ``mailserv-index.sqlite``, beside ``dovecot-uidlist`` (Dovecot ignores
files it does not know).  Per message: UID, file base, flags, modseq, size (CRLF),
internal date with the offset it was given in, and the parsed ``MessageInfo``
(``mailserv.message.store`` format).  Per mailbox: the UIDVALIDITY it describes,
HIGHESTMODSEQ and the first UID still \\Recent.  Expunged UIDs stay with their modseq, for
``changes_since``.  A STORE of many messages answers before it renames their files
(``renamer``): until then the index holds their flags, and ``renames`` the names the files
still have.

The index is a cache of the files plus the modseqs: the files and ``dovecot-uidlist`` are
the truth.  An index for another UIDVALIDITY, of an unknown format or unreadable is
thrown away and rebuilt.  WAL mode: a crash loses at most the last transactions, which the
next sync puts back from the files.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, NamedTuple, TypeVar

from twisted.logger import Logger

from mailserv.backends.kit.changes import Flagged
from mailserv.backends.kit.words import indexable
from mailserv.backends.maildir import snapshot, sortrow, words
from mailserv.backends.maildir.snapshot import Columns
from mailserv.backends.maildir.textrow import TextRow, blob
from mailserv.message import heads, store
from mailserv.message.info import MessageInfo
from mailserv.message.lazyinfo import LazyInfo, is_current

_log = Logger()

T = TypeVar("T")

FILENAME = "mailserv-index.sqlite"
FORMAT = "2"
"""1: flags and modseq in ``message``; 2: in ``flag`` (an index of format 1 is converted)."""
_BATCH = 500
"""Host parameters per statement (SQLite allows 999 in older builds)."""
_FEW = 8
"""UIDs up to which a statement per UID beats one with a JSON array of them (``settle``:
80 against 10 microseconds for one)."""
IDLE_READERS = 2
"""Read-only connections an index keeps open between tasks (``Index.reading``): opening
one and warming its cache cost a SEARCH 0.8 ms at 20k messages, a reused one 0.02 ms;
each open connection holds three descriptors (the file, its log, the shared memory)."""
BUSY_MS = 5000
"""How long a transaction begun in a thread waits for another process's (sqlite3's own
default)."""
WAL_PAGES = 1000
"""Pages in the log after which a commit copies them into the database (SQLite's default
automatic checkpoint), for the transactions begun in a thread."""
MMAP_BYTES = 1 << 30
"""Of the index file read through a memory map, per connection (address space, not memory
of its own): a page the connection's 2 MB cache lacks is read without a system call."""
CHECKPOINT_AFTER = 200
"""Commits on the reactor thread (``transaction_now``) after which a checkpoint is owed:
those commits make none, since a checkpoint writes the database file and flushes it."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS message (
    uid INTEGER PRIMARY KEY,
    base TEXT NOT NULL,
    size INTEGER NOT NULL,
    date INTEGER NOT NULL,
    tz INTEGER NOT NULL,
    info BLOB,
    heads BLOB,
    sorting BLOB
);
CREATE TABLE IF NOT EXISTS flag (
    uid INTEGER PRIMARY KEY,
    flags TEXT NOT NULL,
    modseq INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS expunged (uid INTEGER PRIMARY KEY, modseq INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS expunged_modseq ON expunged (modseq);
CREATE INDEX IF NOT EXISTS message_base ON message (uid, base);
CREATE TABLE IF NOT EXISTS search (
    uid INTEGER PRIMARY KEY,
    from_ BLOB NOT NULL,
    to_ BLOB NOT NULL,
    cc BLOB NOT NULL,
    bcc BLOB NOT NULL,
    subject BLOB NOT NULL,
    hfrom BLOB NOT NULL,
    hto BLOB NOT NULL,
    hcc BLOB NOT NULL,
    hbcc BLOB NOT NULL,
    sent_day INTEGER,
    header BLOB,
    body BLOB
);
CREATE INDEX IF NOT EXISTS search_odd ON search (uid) WHERE header IS NOT NULL;
CREATE INDEX IF NOT EXISTS search_uids ON search (uid);
CREATE TABLE IF NOT EXISTS renames (uid INTEGER PRIMARY KEY, shape TEXT NOT NULL);
"""
_META_INDEX = "CREATE INDEX IF NOT EXISTS message_meta ON message (uid, size, date, tz)"
_FULLTEXT = (
    "CREATE TABLE IF NOT EXISTS texts "
    "(uid INTEGER PRIMARY KEY, header TEXT NOT NULL, body TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS pending (uid INTEGER PRIMARY KEY)",
    "CREATE TABLE IF NOT EXISTS forgetting (uid INTEGER PRIMARY KEY)",
    "CREATE VIRTUAL TABLE IF NOT EXISTS fulltext USING fts5(header, body, content='texts', "
    "content_rowid='uid', tokenize='trigram')",
)
"""Case-folded decoded header and body by UID (``texts``, compared with ``instr()``) and
their trigram index (``fulltext``, over ``texts``), for TEXT and BODY.  Texts enter the
trigram index in batches, after the message (``pending`` lists those not there yet, which
SEARCH compares without the index's help).  The texts of messages gone leave the
trigram and word indexes later, a batch at a time (``forgetting`` lists them, which every
SEARCH leaves out; FTS5 re-reads and tokenizes a text to forget it).  A message whose
texts SQLite cannot hold as text (a NUL, a lone surrogate) has them in ``search`` as bytes
instead, and no row here.  (``message_meta`` lets a search of flags, dates and sizes read
a narrow index, not the rows with their infos; ``search_odd`` finds the rows with texts
in ``search`` without reading the others; ``search_uids`` counts the rows of ``search``
without reading them, which took milliseconds at 20k messages.)
``flag``: each message's flags and modseq, apart from the wide rows with their infos (a
STORE of 100k messages rewrites 100k short rows, not megabytes of infos).  ``renames``: the
messages whose file names do not carry their flags yet, with the name each file has (its
shape: see ``renamer``).  ``message.heads`` and ``message.sorting``: what FETCH of the
headers and what SORT and THREAD read of a record, kept apart when it enters the index
(``mailserv.message.heads``, ``sortrow``)."""


@dataclass(slots=True)
class Row:
    uid: int
    base: str
    flags: frozenset[str]
    modseq: int
    size: int
    date: int  # seconds since the epoch
    tz: int  # minutes east of UTC


@dataclass(slots=True)
class Owed:
    """A rename owed: the file of ``uid`` has the name ``shape`` gives, the index its
    ``flags`` (since ``modseq``)."""

    uid: int
    base: str
    shape: str
    flags: frozenset[str]
    modseq: int


class Index:
    """The writer connection (used by one task at a time, from any thread) and a reader
    for the reactor thread (message infos on demand)."""

    def __init__(self, directory: str, fsync: bool) -> None:
        self.path = os.path.join(directory, FILENAME)
        self.fsync = fsync
        self._db: sqlite3.Connection | None = None
        self._reader: sqlite3.Connection | None = None
        self._idle: deque[sqlite3.Connection] = deque()
        """Readers for any thread, between tasks (``reading``)."""
        self.highestmodseq = 1
        self.recent_floor = 1
        self.fresh = False
        self.fulltext = False
        """Whether this SQLite has FTS5's trigram tokenizer (else TEXT and BODY decline)."""
        self.unchecked = 0
        """Commits made by ``transaction_now`` since the last ``checkpoint``."""

    # -- opening --------------------------------------------------------------------------

    def open(self, uidvalidity: int) -> None:
        """Open (or rebuild) the index of ``uidvalidity``; ``fresh`` tells whether it was new."""
        try:
            self._open(uidvalidity)
        except sqlite3.DatabaseError as exc:
            _log.warn("Rebuilding unreadable index {path}: {error}", path=self.path, error=exc)
            self.close()
            for suffix in ("", "-wal", "-shm"):
                try:
                    os.unlink(self.path + suffix)
                except FileNotFoundError:
                    pass
            self._open(uidvalidity)

    def _open(self, uidvalidity: int) -> None:
        db = sqlite3.connect(
            self.path, BUSY_MS / 1000, isolation_level=None, check_same_thread=False
        )
        self._db = db
        _map(db)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute(f"PRAGMA synchronous={'NORMAL' if self.fsync else 'OFF'}")
        db.execute(f"PRAGMA wal_autocheckpoint = {WAL_PAGES}")
        db.executescript(_SCHEMA)
        _convert(db, self.path)
        _add_column(db, "heads")
        _add_column(db, "sorting")
        db.execute(_META_INDEX)
        db.execute(snapshot.SCHEMA)
        try:
            made = db.execute("SELECT sql FROM sqlite_master WHERE name = 'fulltext'").fetchone()
            if made is not None and "content='texts'" not in made[0]:
                db.execute("DROP TABLE fulltext")  # another layout: its texts are made again
                db.execute("DELETE FROM search")
            for statement in _FULLTEXT:
                db.execute(statement)
            words.create(db)  # the word index beside the trigram index (words.py)
            self.fulltext = True
        except sqlite3.OperationalError as exc:
            _log.warn("No full-text index in {path}: {error}", path=self.path, error=exc)
            self.fulltext = False
        meta = dict(db.execute("SELECT key, value FROM meta").fetchall())
        if meta.get("format") in _CONVERTED and meta.get("uidvalidity") == str(uidvalidity):
            with self.transaction():
                self._put({"format": FORMAT})
            meta["format"] = FORMAT
        if meta.get("format") != FORMAT or meta.get("uidvalidity") != str(uidvalidity):
            if meta:
                _log.info("Index {path} is stale; rebuilding it", path=self.path)
            with self.transaction():
                db.execute("DELETE FROM message")
                db.execute("DELETE FROM flag")
                db.execute("DELETE FROM expunged")
                db.execute("DELETE FROM search")
                db.execute("DELETE FROM renames")
                if self.fulltext:
                    db.execute("DELETE FROM texts")
                    db.execute("DELETE FROM pending")
                    db.execute("DELETE FROM forgetting")
                    db.execute("INSERT INTO fulltext (fulltext) VALUES ('delete-all')")
                    words.reset(db)
                db.execute("DELETE FROM meta")
                snapshot.drop(db)
                self._put({"format": FORMAT, "uidvalidity": str(uidvalidity)})
                self._put({"highestmodseq": "1", "recent_floor": "1"})
            meta = {"highestmodseq": "1", "recent_floor": "1"}
            self.fresh = True
        else:
            self.fresh = False
        self.highestmodseq = int(meta.get("highestmodseq", 1))
        self.recent_floor = int(meta.get("recent_floor", 1))

    def close(self) -> None:
        idle, self._idle = self._idle, deque()  # a reader out now is closed when it is back
        for db in (self._db, self._reader, *idle):
            if db is not None:
                try:
                    db.close()
                except sqlite3.Error:
                    pass
        self._db = self._reader = None

    @property
    def db(self) -> sqlite3.Connection:
        if self._db is None:
            raise RuntimeError("index is closed")
        return self._db

    # -- reading --------------------------------------------------------------------------

    def columns(self, step: int) -> Iterator[Columns]:
        """Every message row, by column, ascending UIDs, ``step`` rows at a time (the
        caller may let other threads run in between), all from one read of the index:
        from its snapshot when that is current, else two narrow indexes, each column of a
        step one string split in C (a mailbox's first load reads 100k rows)."""
        db = self.db
        db.execute("BEGIN")  # every step sees the same rows
        try:
            kept = snapshot.read(db) if snapshot.valid(db) else None
            yield from self._steps(step) if kept is None else kept
        finally:
            db.execute("COMMIT")

    def keep_snapshot(self, minimum: int, step: int) -> None:
        """Keep the rows in the snapshot for the next load, if there are ``minimum``."""
        db = self.db
        with self.transaction():
            (count,) = db.execute("SELECT count(*) FROM message").fetchone()
            if count < minimum:
                snapshot.drop(db)
                return
            if snapshot.valid(db):
                return
            snapshot.write(db, self._steps(step))
        # Into the database file now, not at the next start's first write (the log holds
        # megabytes: that write would wait for them).
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def _steps(self, step: int) -> Iterator[Columns]:
        last = -1
        while True:
            found = self._columns_after(last, step)
            if not found.uid:
                return
            yield found
            last = found.uid[-1]

    def _columns_after(self, last: int, step: int) -> Columns:
        db = self.db
        meta = db.execute(
            "SELECT count(*), group_concat(uid), group_concat(size), group_concat(date), "
            "group_concat(tz) FROM (SELECT uid, size, date, tz "
            "FROM message INDEXED BY message_meta WHERE uid > ? ORDER BY uid LIMIT ?)",
            (last, step),
        ).fetchone()
        flagged = db.execute(
            "SELECT group_concat(uid), group_concat(flags, char(10)), group_concat(modseq) "
            "FROM (SELECT uid, flags, modseq FROM flag WHERE uid > ? ORDER BY uid LIMIT ?)",
            (last, step),
        ).fetchone()
        named = db.execute(
            "SELECT group_concat(uid), group_concat(base, char(10)) FROM (SELECT uid, base "
            "FROM message INDEXED BY message_base WHERE uid > ? ORDER BY uid LIMIT ?)",
            (last, step),
        ).fetchone()
        count, uids, *numbers = meta
        if not count:
            return Columns([], [], [], [], [], [], [])
        bases = named[1].split("\n")
        texts = (flagged[1] or "").split("\n")
        if named[0] != uids or flagged[0] != uids or len(bases) != count or len(texts) != count:
            rows = db.execute(  # a newline in a base or a flag: row by row
                "SELECT m.uid, m.base, coalesce(f.flags, ''), coalesce(f.modseq, 1), m.size, "
                "m.date, m.tz FROM message m LEFT JOIN flag f ON f.uid = m.uid "
                "WHERE m.uid > ? ORDER BY m.uid LIMIT ?",
                (last, step),
            ).fetchall()
            return Columns(*(list(column) for column in zip(*rows, strict=True)))
        ints = [list(map(int, column.split(","))) for column in (uids, flagged[2], *numbers)]
        return Columns(ints[0], bases, texts, *ints[1:])

    def infos(self, uids: Sequence[int]) -> dict[int, Stored]:
        """Stored infos of ``uids`` (missing or NULL ones left out); reactor thread."""
        if self._reader is None:
            self._reader = _map(sqlite3.connect(f"file:{self.path}?mode=ro", uri=True))
        return infos_of(self._reader, uids)

    def present(self, rows: Sequence[tuple[int, T]]) -> list[tuple[int, T]]:
        """Those of ``rows`` whose UID has a message row."""
        uids = set(present_uids(self.db, [uid for uid, _ in rows]))
        return [(uid, value) for uid, value in rows if uid in uids]

    @contextmanager
    def reading(self) -> Iterator[sqlite3.Connection]:
        """A read-only connection for one task in any thread (WAL: it never waits for the
        writer and sees the last committed state), kept for the next task after (at most
        ``IDLE_READERS`` of them), unless the index was closed meanwhile."""
        idle = self._idle
        try:
            db = idle.pop()  # deque: pop and append are atomic (any thread)
        except IndexError:
            db = _map(
                sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, check_same_thread=False)
            )
        kept = False
        try:
            yield db
            kept = self._keeps(db, idle)
        finally:
            if not kept:
                db.close()

    def _keeps(self, db: sqlite3.Connection, idle: deque[sqlite3.Connection]) -> bool:
        """Put a reader back among the idle ones of ``idle``, if the index is still open
        (not closed, nor closed and opened again, since it was taken) and has room."""
        if self._db is None or idle is not self._idle or len(idle) >= IDLE_READERS:
            return False
        try:
            if db.in_transaction:
                db.rollback()  # its snapshot would hold the log back from checkpoints
        except sqlite3.Error:
            return False
        idle.append(db)
        return True

    def missing_texts(self, limit: int) -> list[int]:
        return missing_texts(self.db, limit)

    def vanished_since(self, modseq: int) -> list[int]:
        return [
            uid
            for (uid,) in self.db.execute(
                "SELECT uid FROM expunged WHERE modseq > ? ORDER BY uid", (modseq,)
            )
        ]

    # -- writing --------------------------------------------------------------------------

    def transaction(self) -> _Transaction:
        return _Transaction(self.db)

    @contextmanager
    def transaction_now(self) -> Iterator[bool]:
        """A transaction for the reactor thread, which may wait neither for a lock nor for
        the disk: begun only if no other process (``--workers N``) holds the write lock
        (else False and nothing begun), and its commit copies no pages into the database
        file (``checkpoint``, in a thread, once ``checkpoint_owed``)."""
        db = self.db
        db.execute("PRAGMA busy_timeout = 0")
        try:
            db.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            if exc.sqlite_errorcode & 0xFF != sqlite3.SQLITE_BUSY:
                raise
            began = False
        else:
            began = True
        finally:
            db.execute(f"PRAGMA busy_timeout = {BUSY_MS}")
        if not began:
            yield False
            return
        db.execute("PRAGMA wal_autocheckpoint = 0")
        try:
            yield True
        except BaseException:
            db.execute("ROLLBACK")
            raise
        else:
            db.execute("COMMIT")
        finally:
            db.execute(f"PRAGMA wal_autocheckpoint = {WAL_PAGES}")
        self.unchecked += 1

    @property
    def checkpoint_owed(self) -> bool:
        return self.unchecked >= CHECKPOINT_AFTER

    def checkpoint(self) -> None:
        """Copy the log's pages into the database file, as far as readers allow (an I/O
        task: the file is flushed)."""
        self.unchecked = 0
        self.db.execute("PRAGMA wal_checkpoint(PASSIVE)")

    def recorded(self, uids: Sequence[int]) -> dict[int, tuple[frozenset[str], int]]:
        """The flags and modseq the index holds for those of ``uids`` it has (another
        process sharing the mailbox may have written them: ``--workers N``)."""
        found: dict[int, tuple[frozenset[str], int]] = {}
        for start in range(0, len(uids), _BATCH):
            part = uids[start : start + _BATCH]
            marks = ",".join("?" * len(part))
            for uid, flags, modseq in self.db.execute(
                f"SELECT uid, flags, modseq FROM flag WHERE uid IN ({marks})", part
            ):
                found[uid] = (flag_set(flags), modseq)
                self.highestmodseq = max(self.highestmodseq, modseq)
        return found

    def stored_rows(self, uids: Sequence[int]) -> dict[int, Row]:
        """The rows of those of ``uids`` that the index has with their infos (written by
        another process sharing the mailbox: ``--workers N``)."""
        found: dict[int, Row] = {}
        for start in range(0, len(uids), _BATCH):
            part = uids[start : start + _BATCH]
            marks = ",".join("?" * len(part))
            for uid, base, flags, modseq, size, date, tz in self.db.execute(
                "SELECT m.uid, m.base, f.flags, f.modseq, m.size, m.date, m.tz FROM message m "
                f"JOIN flag f ON f.uid = m.uid WHERE m.uid IN ({marks}) AND m.info IS NOT NULL",
                part,
            ):
                found[uid] = Row(uid, base, flag_set(flags), modseq, size, date, tz)
                self.highestmodseq = max(self.highestmodseq, modseq)
        return found

    def next_modseq(self) -> int:
        """Take a new modseq (inside a transaction): above every one taken so far by any
        process sharing this index (``--workers N``)."""
        row = self.db.execute("SELECT value FROM meta WHERE key = 'highestmodseq'").fetchone()
        if row is not None:
            self.highestmodseq = max(self.highestmodseq, int(row[0]))
        self.highestmodseq += 1
        self._put({"highestmodseq": str(self.highestmodseq)})
        return self.highestmodseq

    def set_recent_floor(self, uid: int) -> None:
        if uid > self.recent_floor:
            self.claim_recent(uid)  # never lowers what another process raised it to

    def claim_recent(self, floor: int) -> int:
        """Raise the \\Recent floor shared by every process of the mailbox to ``floor``; the
        floor found first (UIDs from it up are this caller's: read and raised in one write
        transaction, so of two processes claiming the same message exactly one gets it)."""
        with self.transaction():
            row = self.db.execute("SELECT value FROM meta WHERE key = 'recent_floor'").fetchone()
            found = int(row[0]) if row is not None else 1
            if floor > found:
                self._put({"recent_floor": str(floor)})
        self.recent_floor = max(self.recent_floor, found, floor)
        return found

    def insert(
        self, rows: Iterable[tuple[Row, bytes | None, TextRow | None, MessageInfo | None]]
    ) -> None:
        """New messages with their records and search rows (None: made later, by a
        backfill), and their infos when the caller has them (else the sort keys are read
        from the record: one more decoding)."""
        rows = list(rows)
        self.db.executemany(
            "INSERT OR REPLACE INTO message (uid, base, size, date, tz, info, heads, sorting) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (r.uid, r.base, r.size, r.date, r.tz, kept, _heads(kept), _sorting(kept, info))
                for r, kept, _, info in rows
            ],
        )
        self.db.executemany(
            "INSERT OR REPLACE INTO flag (uid, flags, modseq) VALUES (?, ?, ?)",
            [(r.uid, _text(r.flags), r.modseq) for r, *_ in rows],
        )
        self._drop_texts([r.uid for r, _, texts, _ in rows if texts is None])
        self.set_texts((r.uid, texts) for r, _, texts, _ in rows if texts is not None)

    def set_texts(self, rows: Iterable[tuple[int, TextRow]]) -> None:
        """(Re)place the search rows of these UIDs (inside a transaction)."""
        rows = list(rows)
        if not rows:
            return
        self._drop_texts([uid for uid, _ in rows])
        plain = []
        odd = []
        for uid, texts in rows:
            *fields, header, body = texts
            if self.fulltext and indexable(header) and indexable(body):
                plain.append((uid, header, body))
                odd.append((uid, *fields, None, None))
            else:
                odd.append((uid, *fields, blob(header), blob(body)))
        self.db.executemany(
            "INSERT INTO search (uid, from_, to_, cc, bcc, subject, hfrom, hto, hcc, hbcc, "
            "sent_day, header, body) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            odd,
        )
        if plain:
            self.db.executemany("INSERT INTO texts (uid, header, body) VALUES (?, ?, ?)", plain)
            self.db.executemany("INSERT INTO pending (uid) VALUES (?)", [(r[0],) for r in plain])
            words.mark_long(self.db, [uid for uid, h, b in plain if words.is_long(h, b)])

    def flush_texts(self, limit: int) -> bool:
        """Add up to ``limit`` pending texts to the trigram index (one transaction: FTS5
        writes a batch several times cheaper than single rows); whether more are pending."""
        with self.transaction():
            uids = [(u,) for (u,) in self.db.execute("SELECT uid FROM pending LIMIT ?", (limit,))]
            self.db.executemany(
                "INSERT INTO fulltext (rowid, header, body) "
                "SELECT uid, header, body FROM texts WHERE uid = ?",
                uids,
            )
            words.add(self.db, [uid for (uid,) in uids])
            self.db.executemany("DELETE FROM pending WHERE uid = ?", uids)
        return len(uids) == limit

    def _drop_texts(self, uids: Sequence[int]) -> None:
        """The search rows of ``uids`` gone now, out of every index (their texts replaced)."""
        if not uids:
            return
        params = [(uid,) for uid in uids]
        self.db.executemany("DELETE FROM search WHERE uid = ?", params)
        if self.fulltext:
            self._forget(params)

    def _forget(self, params: Sequence[tuple[int]]) -> None:
        """Take the texts of these UIDs out of the trigram and word indexes and of
        ``texts`` (inside a transaction)."""
        # An external-content index re-reads the texts it forgets from ``texts`` (half the
        # CPU of its 'delete' command given the same values: bench.maildirforget).
        indexed = self.db.execute(
            "SELECT uid FROM texts WHERE uid IN (SELECT value FROM json_each(?)) "
            "AND uid NOT IN (SELECT uid FROM pending)",
            (json.dumps([uid for (uid,) in params]),),
        ).fetchall()
        self.db.executemany("DELETE FROM fulltext WHERE rowid = ?", indexed)
        words.drop(self.db, [uid for (uid,) in params])
        for table in ("pending", "forgetting", "texts"):
            self.db.executemany(f"DELETE FROM {table} WHERE uid = ?", params)

    def _drop_texts_later(self, uids: Sequence[int]) -> None:
        """The search rows of messages gone (inside a transaction): ``search`` and the
        texts not in the trigram index yet go now; the others join ``forgetting`` (which
        every SEARCH leaves out) and leave the indexes later (:meth:`forget_some`)."""
        if not uids:
            return
        params = [(uid,) for uid in uids]
        self.db.executemany("DELETE FROM search WHERE uid = ?", params)
        if not self.fulltext:
            return
        listed = json.dumps(list(uids))
        # Texts still pending are in neither index: they go at once.
        waiting = self.db.execute(
            "SELECT uid FROM pending WHERE uid IN (SELECT value FROM json_each(?))", (listed,)
        ).fetchall()
        if waiting:
            self._forget(waiting)
        self.db.execute(
            "INSERT OR IGNORE INTO forgetting (uid) "
            "SELECT uid FROM texts WHERE uid IN (SELECT value FROM json_each(?))",
            (listed,),
        )

    def forget_some(self, limit: int) -> bool:
        """Take up to ``limit`` texts of messages gone out of the indexes (a transaction
        of its own, so another writer waits for one batch at most); whether more are owed."""
        if not self.fulltext:
            return False
        if self.db.execute("SELECT 1 FROM forgetting LIMIT 1").fetchone() is None:
            return False  # (no write lock taken: every mailbox opened asks once)
        with self.transaction():
            uids = self.db.execute(
                "SELECT uid FROM forgetting ORDER BY uid LIMIT ?", (limit,)
            ).fetchall()
            self._forget(uids)
        return len(uids) == limit

    def update_flags(self, changes: Iterable[Flagged]) -> None:
        """New flags and modseqs; one statement per ``_BATCH`` messages given the same
        (a STORE of 100k messages makes a few distinct sets)."""
        alike: dict[tuple[frozenset[str], int], list[int]] = {}
        for change in changes:
            alike.setdefault((change.flags, change.modseq), []).append(change.uid)
        for (flags, modseq), uids in alike.items():
            self.set_flags(flags, modseq, uids)

    def set_flags(self, flags: frozenset[str], modseq: int, uids: Sequence[int]) -> None:
        """``flags`` and ``modseq`` for every one of ``uids`` (inside a transaction)."""
        text = _text(flags)
        for start in range(0, len(uids), _BATCH):
            part = uids[start : start + _BATCH]
            marks = ",".join("?" * len(part))
            self.db.execute(
                f"UPDATE flag SET flags = ?, modseq = ? WHERE uid IN ({marks})",
                (text, modseq, *part),
            )

    def update_base(self, changes: Iterable[tuple[int, str]]) -> None:
        self.db.executemany(
            "UPDATE message SET base = ? WHERE uid = ?", [(base, uid) for uid, base in changes]
        )

    def owe(self, shapes: Mapping[str, Sequence[int]]) -> None:
        """Renames owed: the UIDs whose files have the names of each shape (inside a
        transaction; one statement per shape, a STORE of 100k makes a few)."""
        for shape, uids in shapes.items():
            self.db.execute(
                "INSERT OR REPLACE INTO renames (uid, shape) SELECT value, ? FROM json_each(?)",
                (shape, json.dumps(uids)),
            )

    def settle(self, uids: Sequence[int]) -> None:
        """The files of ``uids`` have the names their flags give (inside a transaction)."""
        if len(uids) <= _FEW:  # a statement per UID is quicker than a JSON array then
            self.db.executemany("DELETE FROM renames WHERE uid = ?", [(uid,) for uid in uids])
        else:
            self.db.execute(
                "DELETE FROM renames WHERE uid IN (SELECT value FROM json_each(?))",
                (json.dumps(list(uids)),),
            )

    def owed(self, uids: Sequence[int] | None = None) -> list[Owed]:
        """The renames owed (of ``uids``, or all), with the flags and modseq of the index."""
        query = (
            "SELECT m.uid, m.base, r.shape, f.flags, f.modseq FROM renames r "
            "JOIN message m ON m.uid = r.uid JOIN flag f ON f.uid = r.uid"
        )
        if uids is None:
            rows = self.db.execute(query)
        elif not uids:
            return []
        else:
            where = " WHERE r.uid IN (SELECT value FROM json_each(?))"
            rows = self.db.execute(query + where, (json.dumps(list(uids)),))
        return [
            Owed(uid, base, shape, flag_set(text), modseq)
            for uid, base, shape, text, modseq in rows
        ]

    def set_info(self, uid: int, info: bytes) -> None:
        self.db.execute(
            "UPDATE message SET info = ?, heads = ?, sorting = ? WHERE uid = ?",
            (info, _heads(info), sortrow.of_record(info), uid),
        )

    def fill_sorting(self, rows: Sequence[tuple[int, bytes]]) -> None:
        """Give rows written before ``sorting`` was kept their value (``sortrow``)."""
        self.db.executemany(
            "UPDATE message SET sorting = ? WHERE uid = ? AND sorting IS NULL",
            [(value, uid) for uid, value in rows],
        )

    def expunge(self, uids: Sequence[int], modseq: int) -> None:
        self.db.executemany("DELETE FROM message WHERE uid = ?", [(uid,) for uid in uids])
        self.db.executemany("DELETE FROM flag WHERE uid = ?", [(uid,) for uid in uids])
        self.settle(uids)
        self._drop_texts_later(uids)
        self.db.executemany(
            "INSERT OR REPLACE INTO expunged (uid, modseq) VALUES (?, ?)",
            [(uid, modseq) for uid in uids],
        )

    def _put(self, values: dict[str, str]) -> None:
        self.db.executemany(
            "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", list(values.items())
        )


_CONVERTED = ("1",)
"""Formats whose rows ``_convert`` made into this one's."""


def _map(db: sqlite3.Connection) -> sqlite3.Connection:
    """``db``, reading its file through a memory map (:data:`MMAP_BYTES`)."""
    db.execute(f"PRAGMA mmap_size = {MMAP_BYTES}")
    return db


def _convert(db: sqlite3.Connection, path: str) -> None:
    """An index of format 1 (flags and modseq in ``message``): those columns moved to
    ``flag`` (a few seconds for 100k messages, once; the rows stay valid, so nothing is
    parsed again)."""

    def convert() -> None:
        _log.info("Converting the index {path} to format {version}", path=path, version=FORMAT)
        db.execute(
            "INSERT OR REPLACE INTO flag (uid, flags, modseq) "
            "SELECT uid, flags, modseq FROM message"
        )
        db.execute("DROP INDEX IF EXISTS message_meta")
        db.execute("ALTER TABLE message DROP COLUMN flags")
        db.execute("ALTER TABLE message DROP COLUMN modseq")

    _change_layout(db, lambda: "flags" in _columns(db), convert)


def _add_column(db: sqlite3.Connection, name: str) -> None:
    """An index made before ``heads`` or ``sorting`` were kept gets the column (its rows
    keep NULL: they are read from the record, as before)."""

    def add() -> None:
        db.execute(f"ALTER TABLE message ADD COLUMN {name} BLOB")

    _change_layout(db, lambda: name not in _columns(db), add)


def _change_layout(
    db: sqlite3.Connection, needed: Callable[[], bool], change: Callable[[], None]
) -> None:
    """``change`` the tables when ``needed()``, looked at again under the write lock:
    another process sharing the index (``--workers N``) may have changed them meanwhile."""
    if not needed():
        return
    db.execute("BEGIN IMMEDIATE")
    try:
        if needed():
            change()
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise


def _columns(db: sqlite3.Connection) -> set[str]:
    return {row[1] for row in db.execute("PRAGMA table_info(message)")}


def _sorting(record: bytes | None, info: MessageInfo | None) -> bytes | None:
    """The ``sorting`` column of a message (``sortrow``), from its info when given."""
    if record is None or not is_current(record):
        return None  # no record the index reads: the message is parsed again when wanted
    return sortrow.of_record(record) if info is None else sortrow.dump(info)


def _heads(info: bytes | None) -> bytes | None:
    """The ``heads`` column of a record (:mod:`mailserv.message.heads`): read from it once,
    as the message enters the index, not at each first FETCH of it after a start."""
    if info is None or not is_current(info):
        return None
    try:
        return heads.dump(store.heads_of(info))
    except store.UnknownFormat:
        return None


def missing_texts(db: sqlite3.Connection, limit: int) -> list[int]:
    """Up to ``limit`` UIDs whose search row is still to be made (oldest first)."""
    return [
        uid
        for (uid,) in db.execute(
            "SELECT uid FROM message WHERE uid NOT IN (SELECT uid FROM search) "
            "ORDER BY uid LIMIT ?",
            (limit,),
        )
    ]


def present_uids(db: sqlite3.Connection, uids: Sequence[int]) -> list[int]:
    if not uids:
        return []
    marks = ",".join("?" * len(uids))
    return [uid for (uid,) in db.execute(f"SELECT uid FROM message WHERE uid IN ({marks})", uids)]


def texts_of(db: sqlite3.Connection, uids: Sequence[int], fulltext: bool) -> dict[int, TextRow]:
    """The search rows the index holds for ``uids`` (``fulltext``: with the texts table),
    as :func:`~mailserv.backends.maildir.textrow.text_row` made them; UIDs without one
    are left out."""
    found: dict[int, TextRow] = {}
    texts = ", t.header, t.body" if fulltext else ", NULL, NULL"
    joined = " LEFT JOIN texts t ON t.uid = s.uid" if fulltext else ""
    for start in range(0, len(uids), _BATCH):
        part = uids[start : start + _BATCH]
        marks = ",".join("?" * len(part))
        rows = db.execute(
            "SELECT s.uid, s.from_, s.to_, s.cc, s.bcc, s.subject, s.hfrom, s.hto, s.hcc, "
            f"s.hbcc, s.sent_day, s.header, s.body{texts} FROM search s{joined} "
            f"WHERE s.uid IN ({marks})",
            part,
        )
        for uid, *fields, odd_header, odd_body, header, body in rows:
            if header is None or body is None:  # texts SQLite cannot hold, as bytes
                if odd_header is None or odd_body is None:
                    continue
                header = odd_header.decode("utf-8", "surrogatepass")
                body = odd_body.decode("utf-8", "surrogatepass")
            found[uid] = (*fields, header, body)  # type: ignore[assignment]
    return found


class Stored(NamedTuple):
    """A message's record and its heads as the index holds them (None: not kept)."""

    info: bytes
    heads: bytes | None

    def lazy(self) -> LazyInfo:
        """The info, its heads read from the column when there (no decoding)."""
        return LazyInfo(self.info, heads.load(self.heads))


def infos_of(db: sqlite3.Connection, uids: Sequence[int]) -> dict[int, Stored]:
    return {
        uid: Stored(info, kept)
        for uid, info, kept in _rows_of(db, "info, heads", uids)
        if info is not None
    }


def sorting_of(db: sqlite3.Connection, uids: Sequence[int]) -> dict[int, bytes]:
    """The ``sorting`` values of ``uids`` (rows with NULL left out)."""
    return {uid: value for uid, value in _rows_of(db, "sorting", uids) if value is not None}


def _rows_of(db: sqlite3.Connection, columns: str, uids: Sequence[int]) -> Iterator[Any]:
    """``uid, columns`` of the rows of ``uids``: one range read when they are close."""
    if not uids:
        return
    low, high = min(uids), max(uids)
    wanted = set(uids)
    if high - low < 4 * len(wanted):
        rows = db.execute(
            f"SELECT uid, {columns} FROM message WHERE uid BETWEEN ? AND ?", (low, high)
        )
    else:
        marks = ",".join("?" * len(wanted))
        rows = db.execute(
            f"SELECT uid, {columns} FROM message WHERE uid IN ({marks})", tuple(wanted)
        )
    yield from (row for row in rows if row[0] in wanted)


class _Transaction:
    """``with index.transaction():`` — BEGIN IMMEDIATE, COMMIT, or ROLLBACK on error."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __enter__(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")

    def __exit__(self, kind: object, *rest: object) -> None:
        self._db.execute("ROLLBACK" if kind is not None else "COMMIT")


def _text(flags: frozenset[str]) -> str:
    return " ".join(sorted(flags))


def flag_set(text: str) -> frozenset[str]:
    """Flags as the index stores them, as a set."""
    return frozenset(text.split()) if text else frozenset()
