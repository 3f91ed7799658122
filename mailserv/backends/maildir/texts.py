"""Keeping a mailbox's full-text search rows complete and its trigram index fed.

New messages get their search row when they enter the index; the rows join the trigram
index a little later, in batches (``flush_later``).  A mailbox indexed before the full-text
index existed (or whose rows were dropped) is filled in the background (``fill``): files
read and decoded in a read thread, rows written in the lane.  Until then SEARCH of texts is
left to the engine.  After the batches of new texts, the word index gets the texts indexed
before it existed (``words.backfill``); meanwhile the trigram index answers alone.

The texts of messages gone leave the trigram and word indexes after the EXPUNGE answered
(``forget_later``): SEARCH leaves them out meanwhile (the index's ``forgetting``, kept in
the index: a restart or another process sharing the mailbox goes on with it), and a batch
at a time takes them out, each batch a transaction of its own in the lane, followed by a
pause as long as it lasted (another process's writer gets the index between two)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall
from twisted.internet.task import deferLater
from twisted.logger import Logger
from twisted.python.failure import Failure

from mailserv.backends.maildir import words

if TYPE_CHECKING:
    from mailserv.backends.maildir.mailbox import MaildirMailbox

_log = Logger()

TEXT_BATCH = 200
"""Messages whose search rows one step of an index rebuild makes."""
FLUSH_DELAY = 0.1
"""Seconds new texts wait to enter the trigram index together (SEARCH sees them already)."""
FLUSH_BATCH = 500
FORGET_DELAY = 0.5
"""Seconds after an EXPUNGE before its texts start leaving the indexes."""
FORGET_BATCH = 20
"""Texts of messages gone one transaction takes out of the indexes: FTS5 re-reads and
tokenizes a text to forget it, about 0.15 ms CPU a text at 100k messages in batches of 10
to 200 alike (``bench.maildirforget``), so a transaction holds the index a few ms (tens
when FTS5 merges segments meanwhile)."""


class TextUpkeep:
    def __init__(self, box: MaildirMailbox) -> None:
        self._box = box
        self.ready = False
        """Every message has its search row."""
        self._filling = False
        self._flush: IDelayedCall | None = None
        self._forget: IDelayedCall | None = None
        self._forgetting = False
        """Whether the loop taking texts of messages gone out of the indexes runs."""

    def _failed(self, failure: Failure) -> None:
        _log.failure("Indexing the texts of {name} failed", failure, name=self._box.name)

    def fill(self) -> None:
        """Make the missing search rows, a batch at a time."""
        box = self._box
        if self.ready or self._filling or not box.live:
            return
        self._filling = True

        async def fill() -> None:
            disk = box.disk
            try:
                while box.live:
                    missing = await box.read_io(disk.missing_texts, TEXT_BATCH)
                    if not missing:
                        self.ready = True
                        return
                    files = [(uid, path) for uid in missing if (path := box.path_of(uid))]
                    rows = await box.read_io(disk.text_rows, files)
                    if not rows:
                        return  # files not where we thought: the next sync starts again
                    async with box.lane:
                        if not box.live:
                            return
                        await box.io(disk.store_texts, rows)
                    self.flush_later()
            finally:
                self._filling = False

        Deferred.fromCoroutine(fill()).addErrback(self._failed)

    def flush_later(self) -> None:
        """Soon, add the texts of new messages to the trigram index, a batch at a time."""
        if self._flush is not None and self._flush.active():
            return
        box = self._box

        async def flush() -> None:
            more = True
            while more:
                async with box.lane:
                    if not box.live:
                        return
                    more = await box.io(box.disk.flush_texts, FLUSH_BATCH)
            more = box.disk.index.fulltext
            while more:  # the word index of texts indexed before it (words.py)
                async with box.lane:
                    if not box.live:
                        return
                    more = await box.io(words.backfill, box.disk.index.db, words.BACKFILL_BATCH)

        def start() -> None:
            self._flush = None
            Deferred.fromCoroutine(flush()).addErrback(self._failed)

        self._flush = box.clock.callLater(FLUSH_DELAY, start)

    def forget_later(self) -> None:
        """Soon, take the texts of messages gone out of the indexes, a batch at a time
        (nothing to do when ``forgetting`` is empty: one short read)."""
        if self._forgetting or (self._forget is not None and self._forget.active()):
            return
        box = self._box

        async def forget() -> None:
            self._forgetting = True
            try:
                more = True
                while more:
                    async with box.lane:
                        if not box.live:
                            return
                        began = time.perf_counter()
                        more = await box.io(box.disk.forget_texts, FORGET_BATCH)
                        spent = time.perf_counter() - began
                    if more:  # others' turn: as long as this batch held the index
                        await deferLater(box.clock, spent, lambda: None)
            finally:
                self._forgetting = False

        def start() -> None:
            self._forget = None
            Deferred.fromCoroutine(forget()).addErrback(self._failed)

        self._forget = box.clock.callLater(FORGET_DELAY, start)

    def stop(self) -> None:
        for call in (self._flush, self._forget):
            if call is not None and call.active():
                call.cancel()
        self._flush = self._forget = None
