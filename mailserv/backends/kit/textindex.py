"""SEARCH BODY and TEXT of a mailbox held in memory, from an in-memory SQLite word index.

A backend that keeps each message's bytes and parsed ``MessageInfo`` (the memory backend)
tells a :class:`TextIndex` of the messages that come (:meth:`~TextIndex.added`) and go
(:meth:`~TextIndex.removed`); :meth:`~TextIndex.matching` then answers a BODY or TEXT node
with the UIDs holding its needle, exactly as the engine's scan does.

The texts are the scan's own (:func:`mailserv.message.text.folded_header` and
``folded_body``), kept in a ``:memory:`` SQLite database: a ``texts`` table (UID, header,
body) and the word index over it with its vocabulary (:mod:`mailserv.backends.kit.words`).
A needle's longest run of ASCII letters and digits lies inside one word wherever the needle
occurs: the texts holding a word that contains the run are the answer (the needle is the
run) or the only texts to read (``zebra migration``, ``bench.1``).  Needles without such a
run of three, or whose run is in too many words, are looked for with ``instr()`` in every
text.  No trigram index: it costs ten times the word index to write (0.5 ms a message), for
needles that are rare in SEARCH.  Texts SQLite cannot hold (a NUL, a lone surrogate: rare)
stay in a dict and are compared in Python.

New messages wait in ``pending`` (APPEND costs nothing more) and are indexed once no new
one came for ``QUIET`` seconds (a burst of APPENDs runs at full speed), a slice at a time:
each text is decoded (Python work, on the reactor) and written at once into a transaction
that stays open across slices until ``WRITE_BATCH`` texts are in it (FTS5 writes a segment
per transaction: a few texts each would cost ten times as much; the writes of 32 texts in
one slice held the reactor 4-6 ms CPU at 100k messages, more when the machine was
loaded).  A SEARCH first indexes whatever still waits, in its own slices.  FTS5 merges
no segments by itself (an automatic merge inside a write held the reactor 20-60 ms at 100k
messages): after each write, merge steps of a bounded page count are slices of their own,
until FTS5 finds nothing to merge (what a SEARCH leaves, the background merges).  No query
finds the texts of messages gone from the moment they go (its answer leaves out the UIDs
of ``removing``); they leave ``texts`` and the word index later, a few at a time (moving
the texts of a MOVE of 20k out of the way at once held the reactor 10-30 ms a thousand).
Work nobody waits for takes a bounded share of the reactor (:class:`Background`): after a
slice it waits at least as long as the slice lasted, and longer while other work kept the
reactor busy (so the commands of other sessions are not slowed several-fold by 100k
messages to index).  Queries go over the UIDs in ranges (FTS5
reads a rowid range of its lists), with a pause between ranges and a range's size adapted
so that one lasts about a slice: a SEARCH TEXT over 100k messages holds the reactor a few
ms at a time.
"""

from __future__ import annotations

import re
import sqlite3
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from itertools import islice

from twisted.internet.defer import Deferred, DeferredLock
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.internet.task import deferLater
from twisted.logger import Logger

from mailserv.backends.kit import uidlist
from mailserv.backends.kit import words as vocabulary
from mailserv.message.info import MessageInfo
from mailserv.message.text import folded_body, folded_header
from mailserv.search import Contains, StringField
from mailserv.slicing import SLICE, TimeSlices

QUIET = 0.1
"""Seconds without a new message after which those waiting are indexed."""
WRITE_BATCH = 32
"""Texts written to the index in one transaction (one FTS5 segment), over as many slices
as their decoding and writing take (at 100k messages, merges apart, 32 texts written at
once took 3.6 ms CPU mean; 16 a transaction took about 5% more CPU in all)."""
LONGEST_RUN = 32
"""Characters of a run looked up in the vocabulary (a longer one is in fewer words than
its start: those are found, the texts then read)."""
MERGED = ("words", "term_grams")
"""The FTS5 tables that grow with the mailbox: their automatic merges are off (one could
rewrite segments of thousands of texts in a single write, 20-60 ms at 100k messages);
:meth:`TextIndex._merge_step` merges them a bounded number of pages at a time instead."""
FIRST_MERGE_PAGES = 16
"""Pages the first merge step may write; later ones grow or shrink to last a slice."""
MOST_MERGE_PAGES = 4096
"""Pages a merge step may write at most (FTS5 reads the count as a 32-bit integer)."""
FORGET_BATCH = 8
"""Texts of messages gone taken out of ``texts`` and the word index between two pauses
(about 2 ms)."""
FIRST_RANGE = 1024
"""UIDs the first range of a query covers; later ones grow or shrink to last a slice."""
STEP = SLICE / 4
"""Seconds one step of indexing for a query lasts (about: one message more, at most): the
query pauses between steps, so the slice of a turn holds a few and never ends far past
its budget (steps of a whole slice made turns of 7-9 ms CPU at 100k messages)."""
BACKGROUND_SLICE = 0.002
"""Seconds work nobody waits for holds the reactor at a time (one message's decoding or one
write may last longer)."""
BUSY_SHARE = 0.25
"""Share of a background pause in which the reactor thread worked for others above which
it is busy: the next pause is twice as long (up to ``LONGEST_PAUSE``)."""
LONGEST_PAUSE = 0.2
"""Seconds of the longest pause of work nobody waits for while the reactor is busy."""

_FORGOTTEN = (
    "SELECT 'delete', uid, header, body FROM texts "
    "WHERE uid = ? AND uid NOT IN (SELECT uid FROM long_texts)"
)
"""A text of ``removing`` as the word index was given it (none: it was left out)."""
_COLUMNS = {StringField.BODY: ("body",), StringField.TEXT: ("header", "body")}
_PLACE = {"header": 0, "body": 1}
_RUNS = re.compile("[a-z0-9]+")
_TABLES = (
    "CREATE TABLE texts (uid INTEGER PRIMARY KEY, header TEXT NOT NULL, body TEXT NOT NULL)",
    *vocabulary.tables("texts", "uid"),
    "CREATE TABLE long_texts (uid INTEGER PRIMARY KEY)",
)

_log = Logger()


class Background:
    """The pauses of work nobody waits for (background indexing): it holds the reactor for
    ``BACKGROUND_SLICE`` at most (:attr:`length`), then waits at least as long as it held
    it, so it takes half the reactor at most when nothing else runs.  While it waits, the
    commands of every session run at full speed; when they kept the reactor thread busy
    meanwhile (its CPU time, not the machine's load), it waits twice as long again, up to
    ``LONGEST_PAUSE``, until the reactor is quiet."""

    def __init__(self, clock: IReactorTime) -> None:
        self._clock = clock
        self.length = BACKGROUND_SLICE
        self._since = time.perf_counter()

    async def pause(self) -> None:
        """Give way to the reactor for at least as long as the slice since the last pause
        lasted, longer while others keep it busy."""
        wait = time.perf_counter() - self._since
        while True:
            others = time.thread_time()
            await deferLater(self._clock, wait, lambda: None)
            if time.thread_time() - others <= wait * BUSY_SHARE or wait >= LONGEST_PAUSE:
                break
            wait = min(wait * 2, LONGEST_PAUSE)
        self._since = time.perf_counter()


class TextIndex:
    """The texts of one mailbox's messages; ``clock`` is the reactor its work gives way to."""

    def __init__(self, clock: IReactorTime) -> None:
        self._clock = clock
        self._db: sqlite3.Connection | None = None  # made with the first text
        self._pending: dict[int, tuple[bytes, MessageInfo]] = {}
        self._written: list[tuple[int, str, str]] = []
        """The texts (UID, header, body) written in the transaction left open for more
        (none: none is open); their words reach ``terms`` when it ends (:meth:`_end_write`)."""
        self._odd: dict[int, tuple[str, str]] = {}
        """Texts SQLite cannot hold, by UID."""
        self._indexing = DeferredLock()
        self._flush: IDelayedCall | None = None
        self._background = False
        """Whether the background indexing loop runs (one at a time)."""
        self._last_added = 0.0
        self._purge: IDelayedCall | None = None
        self._removing: set[int] = set()
        """UIDs of messages gone whose texts are still in ``texts`` (queries leave them out
        of their answers)."""
        self._merging: list[str] = []
        """The tables of ``MERGED`` written since their merging last found nothing to do."""
        self._merge_pages = FIRST_MERGE_PAGES
        self._stopped = False
        """Whether work in the background has ended for good (:meth:`stop`)."""

    def stop(self) -> None:
        """No more work in the background: its mailbox is gone or its backend stopped.
        The timers are cancelled and a loop running ends at its next pause; a query still
        indexes what it needs in its own slices, so answers stay right."""
        self._stopped = True
        for call in (self._flush, self._purge):
            if call is not None and call.active():
                call.cancel()
        self._flush = self._purge = None

    def added(self, uid: int, raw: bytes, info: MessageInfo) -> None:
        """A new message (indexed soon)."""
        self._pending[uid] = (raw, info)
        self._last_added = self._clock.seconds()
        if self._flush is None and not self._stopped:
            self._flush = self._clock.callLater(QUIET, self._flushed)

    @property
    def waiting(self) -> int:
        """Messages whose texts no query finds yet: waiting to be decoded, or written in
        a transaction still open."""
        return len(self._pending) + len(self._written)

    def removed(self, uids: Sequence[int]) -> None:
        """Messages gone: no query finds them from now on (their UIDs join ``removing``);
        their texts leave ``texts`` and the word index later, a few at a time (FTS5 re-reads
        a text to forget it: a ms for a few)."""
        pending, odd = self._pending, self._odd
        gone = [u for u in uids if pending.pop(u, None) is None and odd.pop(u, None) is None]
        if not gone or self._db is None:
            return
        self._removing.update(gone)
        if self._purge is None and not self._stopped:
            self._purge = self._clock.callLater(QUIET, self._purged)

    async def matching(
        self, node: Contains, uids: Sequence[int], slices: TimeSlices
    ) -> set[int] | None:
        """The UIDs among ``uids`` (ascending; a few more between the first and the last
        may come) whose texts hold the needle of ``node``, a BODY or TEXT key; None for any
        other key."""
        columns = _COLUMNS.get(node.field)
        if columns is None:
            return None
        needle = node.value.casefold()
        if not needle or not uids:
            return set(uids)
        await self._index_pending(slices)
        low, high = uids[0], uids[-1]
        found = {
            uid
            for uid, texts in self._odd.items()
            if low <= uid <= high and any(needle in texts[_PLACE[c]] for c in columns)
        }
        if self._db is None or not vocabulary.indexable(needle):
            return found  # only a text SQLite cannot hold can hold such a needle
        for statement, params in self._statements(needle, columns):
            found.update(await self._ranges(statement, params, uids, slices))
        removing = self._removing
        if len(removing) < len(found):
            found.difference_update(removing)
        elif removing:
            found = {uid for uid in found if uid not in removing}
        return found

    def _statements(self, needle: str, columns: Sequence[str]) -> list[tuple[str, list[str]]]:
        """Statements of ``group_concat(uid)`` whose first two parameters bound the UIDs,
        and the rest of their parameters: together, the texts holding ``needle``.

        A run of ASCII letters and digits in a needle (characters the word index always
        keeps in its words) lies inside one word wherever the needle occurs, so the texts
        holding it are among those holding a word that contains the run; none, when no
        word does.  The needle is then looked for in those texts alone (when it is the run,
        they are the answer), and in the texts left out of the word index."""
        assert self._db is not None
        test = " OR ".join(f"instr(t.{c}, ?) > 0" for c in columns)
        tested = [needle] * len(columns)
        run = max(_RUNS.findall(needle), key=len, default="")[:LONGEST_RUN]
        if len(run) >= 3:
            found = vocabulary.containing(self._db, run)
        else:  # non-ASCII words: none found may mean a separator in the needle
            long_enough = 3 <= len(needle) <= LONGEST_RUN
            found = vocabulary.terms(self._db, needle) if long_enough else None
            run = needle
        if found is None:  # every text is read
            scan = "SELECT group_concat(t.uid) FROM texts t WHERE t.uid BETWEEN ? AND ?"
            return [(f"{scan} AND ({test})", tested)]
        left_out = (
            "SELECT group_concat(t.uid) FROM long_texts l CROSS JOIN texts t "
            f"ON t.uid = l.uid WHERE l.uid BETWEEN ? AND ? AND ({test})"
        )
        statements = [(left_out, tested)]
        if found:
            match = [vocabulary.query(found, columns)]
            words = "FROM words WHERE rowid BETWEEN ? AND ? AND words MATCH ?"
            if run == needle:  # the index's rows are the answer (a text leaves it with
                # its row of ``texts``, in one transaction: no join to that table)
                statements.append(
                    (
                        "SELECT group_concat(rowid) FROM words"
                        " WHERE rowid BETWEEN ? AND ? AND words MATCH ?",
                        match,
                    )
                )
            else:
                statements.append(
                    (
                        "SELECT group_concat(t.uid) FROM texts t WHERE t.uid IN "
                        f"(SELECT rowid {words}) AND ({test})",
                        match + tested,
                    )
                )
        return statements

    async def _ranges(
        self, statement: str, params: list[str], uids: Sequence[int], slices: TimeSlices
    ) -> list[int]:
        """``statement`` over ``uids`` a range at a time, each range about a slice long."""
        assert self._db is not None
        found: list[int] = []
        size, start = FIRST_RANGE, 0
        while start < len(uids):
            end = min(start + size, len(uids))
            began = time.perf_counter()
            (listed,) = self._db.execute(
                statement, (uids[start], uids[end - 1], *params)
            ).fetchone()
            spent = time.perf_counter() - began
            found += uidlist.numbers(listed or "")
            start = end
            if spent < STEP / 2:
                size *= 2
            elif spent > STEP * 2 and size > 1:
                size //= 2
            await slices.pause()
        return found

    def _busy(self) -> float:
        """Seconds until the mailbox is quiet (no new message for ``QUIET``); 0 if it is."""
        return max(0.0, self._last_added + QUIET - self._clock.seconds())

    def _flushed(self) -> None:
        """Index in the background while no new message comes: a burst of APPENDs runs at
        full speed, and its texts are indexed after it (or by a SEARCH that comes first)."""
        wait = self._busy()
        if wait:
            self._flush = self._clock.callLater(wait, self._flushed)
            return
        self._flush = None
        self._start_background()

    def _start_background(self) -> None:
        """Run the background loop unless it runs already (it then goes on)."""
        if self._background or self._stopped:
            return
        Deferred.fromCoroutine(self._index_in_background()).addErrback(
            lambda failure: _log.failure("Indexing the texts of new messages failed", failure)
        )

    def _purged(self) -> None:
        self._purge = None
        Deferred.fromCoroutine(self._forget_gone(Background(self._clock))).addErrback(
            lambda failure: _log.failure("Forgetting the texts of messages gone failed", failure)
        )

    async def _forget_gone(self, slices: Background) -> None:
        """Take the texts of ``removing`` out of the word index and ``texts``, a few at a
        time (each few at once: another loop that runs meanwhile takes others)."""
        removing = self._removing
        while self._db is not None and removing and not self._stopped:
            batch = [(uid,) for uid in islice(removing, FORGET_BATCH)]
            with self._changing() as db:
                vocabulary.forget(db, _FORGOTTEN, batch)
                db.executemany("DELETE FROM long_texts WHERE uid = ?", batch)
                db.executemany("DELETE FROM texts WHERE uid = ?", batch)
            removing.difference_update(uid for (uid,) in batch)
            if "words" not in self._merging:
                self._merging.append("words")  # its deletions are segments too
            await slices.pause()
        if self._merging and not self._indexing.locked:
            self._start_background()

    async def _index_pending(self, slices: TimeSlices) -> None:
        """Index what waits, for a query: in the query's slices, one loop at a time
        (another waits for it, then finds nothing left)."""
        async with self._indexing:
            while self._pending or self._written:
                self._index_some(STEP)
                await slices.pause()
        if self._merging:  # what is left to merge does not hold up the query
            self._start_background()

    async def _index_in_background(self) -> None:
        """Index what waits while no new message comes (a burst of APPENDs runs at full
        speed; its texts are indexed after it), a slice at a time with :class:`Background`
        pauses.  A query that comes meanwhile indexes the rest in its own slices: this loop
        leaves it the work (it never holds the lock across a pause)."""
        background = Background(self._clock)
        self._background = True
        try:
            while self._pending or self._written or self._merging:
                if self._indexing.locked or self._stopped:
                    return  # a query indexes what is left
                if self._busy():
                    if self._written:  # new messages keep coming: the write ends now
                        self._end_write()
                    if self._flush is None:  # (not stopped: checked above)
                        self._flush = self._clock.callLater(QUIET, self._flushed)
                    return
                self._index_some(background.length)
                await background.pause()
        finally:
            self._background = False

    def _index_some(self, length: float) -> None:
        """One step of indexing, about ``length`` seconds long: end the open write when it
        is full or none waits (its words go to the vocabulary, FTS5 writes its segment:
        half a ms); else merge the segments of the last writes (:meth:`_merge_step`) while
        that finds work; else decode waiting messages and write their texts (one at least)
        into the open transaction until ``length`` is spent or ``WRITE_BATCH`` are in it.
        Messages are taken newest first (a dict's last item goes in constant time; its
        first, after many went, does not)."""
        pending, written = self._pending, self._written
        if written and (len(written) >= WRITE_BATCH or not pending):
            self._end_write()  # a step of its own
            return
        if self._merging and not written:
            self._merge_step(length)
            return
        began = time.perf_counter()
        while pending and len(self._written) < WRITE_BATCH:
            uid, (raw, info) = pending.popitem()
            header, body = folded_header(raw, info), folded_body(raw, info)
            if vocabulary.indexable(header) and vocabulary.indexable(body):
                self._add(uid, header, body)
            else:
                self._odd[uid] = (header, body)
            if time.perf_counter() - began >= length:
                return

    def _write(self, rows: list[tuple[int, str, str]]) -> None:
        """``rows`` (UID, header, body) written in one transaction, at once (tools)."""
        for uid, header, body in rows:
            self._add(uid, header, body)
        if self._written:
            self._end_write()

    def _add(self, uid: int, header: str, body: str) -> None:
        """A text into the write transaction (begun here when none is open)."""
        if self._db is None:
            self._db = sqlite3.connect(":memory:", isolation_level=None)
            for statement in _TABLES:
                self._db.execute(statement)
            for table in MERGED:
                self._db.execute(f"INSERT INTO {table} ({table}, rank) VALUES ('automerge', 0)")
        db = self._db
        if not db.in_transaction:
            db.execute("BEGIN")
        self._written.append((uid, header, body))
        try:
            db.execute("INSERT INTO texts (uid, header, body) VALUES (?, ?, ?)", self._written[-1])
            if vocabulary.is_long(header, body):
                db.execute("INSERT INTO long_texts (uid) VALUES (?)", (uid,))
            else:
                vocabulary.add(db, "SELECT uid, header, body FROM texts WHERE uid = ?", [(uid,)])
        except BaseException:
            self._abandon_write()
            raise

    def _end_write(self) -> None:
        """The words of the texts written to the vocabulary, and the transaction ended."""
        db = self._db
        assert db is not None
        try:
            vocabulary.add_terms(db)
            db.execute("COMMIT")
        except BaseException:
            self._abandon_write()
            raise
        self._written = []
        self._merging = list(MERGED)

    def _abandon_write(self) -> None:
        """A write failed: nothing of its transaction stays; its texts are compared in
        Python (as those SQLite cannot hold), so queries still find them."""
        for uid, header, body in self._written:
            if uid not in self._removing:
                self._odd[uid] = (header, body)
        self._written = []
        if self._db is not None and self._db.in_transaction:
            self._db.execute("ROLLBACK")

    @contextmanager
    def _changing(self) -> Iterator[sqlite3.Connection]:
        """A transaction for a change other than a write of texts; or, while a write is
        open across slices, that write's (the change ends with it, and sees its texts)."""
        db = self._db
        assert db is not None
        if db.in_transaction:
            try:
                yield db
            except BaseException:
                self._abandon_write()
                raise
            return
        with db:
            db.execute("BEGIN")
            yield db

    def _merge_step(self, length: float) -> None:
        """Merge segments of the first table of ``_merging``, ``_merge_pages`` pages at
        most (FTS5 goes on with a merge it began; it begins one where a level has four
        segments): about ``length`` seconds, the page count adapted to the time the last
        step took.  A table whose merge wrote nothing leaves ``_merging``."""
        db = self._db
        if db is None:
            self._merging.clear()
            return
        table = self._merging[0]
        changes = db.total_changes
        began = time.perf_counter()
        db.execute(f"INSERT INTO {table} ({table}, rank) VALUES ('merge', ?)", (self._merge_pages,))
        spent = time.perf_counter() - began
        written = db.total_changes - changes  # pages written and deleted, and the command
        if written < 2:  # FTS5's sign of a merge that did nothing
            self._merging.pop(0)
            return
        if spent < length / 4 and written > self._merge_pages:  # all of it, in little time
            self._merge_pages = min(self._merge_pages * 2, MOST_MERGE_PAGES)
        elif spent > length and self._merge_pages > 1:
            self._merge_pages //= 2
