"""Renaming the files of a STORE of many messages after its answer.

A maildir file's name carries its flags, and 100k renames take seconds, which a client of
``STORE 1:* +FLAGS (\\Seen)`` should not wait for.  So a STORE changing more than
``LAZY_STORE`` messages writes the new flags and modseq to the index in one transaction,
with a row per message in its ``renames`` table (the name the file still has), and answers;
the mailbox's ``Renamer`` then renames the files in slices of ``SLICE``, each a task of the
mailbox's lane (entries' paths change only there), which drops the slice's rows.

Until a file is renamed the index is the truth of its flags: a reload takes the names
from ``renames`` (``MailboxDisk.load``), the reconciler keeps the index's flags for a file
still at that name, and another process sharing the mailbox adopts them from the index.
A file another program renamed or deleted meanwhile is that program's change, which wins
(the reconciler drops the row).  Reads of a file renamed by the slice in progress find it
by ``MailboxDisk.moving``.

The watch is paused while many renames run (their echoes would cost more than one rescan
at the end), as for any bulk change of our own.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from typing import TYPE_CHECKING

from twisted.internet.defer import Deferred
from twisted.logger import Logger

if TYPE_CHECKING:
    from mailserv.backends.maildir.mailbox import MaildirMailbox

_log = Logger()

LAZY_STORE = 500
"""STOREs changing more messages than this answer before their files are renamed."""
SLICE = 500
"""Files renamed per task of the lane (some milliseconds, in a thread; a command that waits
for the lane waits for one slice at most)."""
QUIET = 500
"""Renames owed from which the watch is paused until they are done."""


class Renamer:
    """The renames one mailbox owes, done in the background."""

    def __init__(self, box: MaildirMailbox) -> None:
        self._box = box
        self._owed: deque[Sequence[int]] = deque()
        """The UIDs owed, as the sequences given (a STORE 1:* of 100k owes a list of 100k:
        kept as it is, not copied on the reactor); a UID owed twice is renamed twice, the
        second time a no-op (its file has the name by then)."""
        self._done = 0
        """UIDs of the first sequence taken already."""
        self._running = False

    @property
    def pending(self) -> int:
        """Renames still to do in this process."""
        return sum(map(len, self._owed)) - self._done

    def owe(self, uids: Sequence[int]) -> None:
        """Rename the files of these UIDs soon (``uids`` is kept: not changed afterwards)."""
        if uids:
            self._owed.append(uids)
        if self._owed and not self._running:
            self._running = True
            Deferred.fromCoroutine(self._run()).addErrback(
                lambda f: _log.failure("Renaming files of {name} failed", f, name=self._box.name)
            )

    def stop(self) -> None:
        """The mailbox lets go of its files: what is owed stays in the index for the next
        load."""
        self._owed.clear()
        self._done = 0

    def _take(self) -> list[int]:
        """The next ``SLICE`` UIDs owed, each once."""
        owed = self._owed
        taken: list[int] = []
        while owed and len(taken) < SLICE:
            first, start = owed[0], self._done
            self._done = min(len(first), start + SLICE - len(taken))
            taken += first[start : self._done]
            if self._done == len(first):
                owed.popleft()
                self._done = 0
        return list(dict.fromkeys(taken))

    async def _run(self) -> None:
        box = self._box
        paused: object | None = None
        try:
            while self._owed:
                async with box.lane:
                    if not box.live:
                        self.stop()
                        return
                    if paused is None and self.pending >= QUIET:
                        paused = box.pause_watch()
                    entries = box.known(self._take())
                    if entries:
                        delta = await box.io(box.disk.rename_owed, entries)
                        box.settle(delta)
                    if not self._owed and paused is not None:
                        await box.resume_watch(paused)
                        paused = None
        finally:
            self._running = False
            if paused is not None:  # stopped by an error: watch again all the same
                Deferred.fromCoroutine(self._resume(paused)).addErrback(
                    lambda f: _log.failure("Watching {name} again failed", f, name=box.name)
                )

    async def _resume(self, paused: object) -> None:
        async with self._box.lane:
            await self._box.resume_watch(paused)
