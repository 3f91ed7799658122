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

from collections.abc import Iterable
from itertools import islice
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
        self._owed: dict[int, None] = {}
        """UIDs in the order owed (a dict: a UID owed twice is renamed once)."""
        self._running = False

    @property
    def pending(self) -> int:
        """Renames still to do in this process."""
        return len(self._owed)

    def owe(self, uids: Iterable[int]) -> None:
        """Rename the files of these UIDs soon."""
        self._owed.update(dict.fromkeys(uids))
        if self._owed and not self._running:
            self._running = True
            Deferred.fromCoroutine(self._run()).addErrback(
                lambda f: _log.failure("Renaming files of {name} failed", f, name=self._box.name)
            )

    def stop(self) -> None:
        """The mailbox lets go of its files: what is owed stays in the index for the next
        load."""
        self._owed.clear()

    async def _run(self) -> None:
        box = self._box
        paused: object | None = None
        try:
            while self._owed:
                async with box.lane:
                    if not box.live:
                        self._owed.clear()
                        return
                    if paused is None and len(self._owed) >= QUIET:
                        paused = box.pause_watch()
                    uids = list(islice(self._owed, SLICE))
                    for uid in uids:
                        del self._owed[uid]
                    entries = box.known(uids)
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
