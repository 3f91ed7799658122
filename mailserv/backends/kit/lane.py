"""A mailbox's *lane*: its changes one after the other, each free to share the reactor.

A change to a big mailbox (``STORE 1:*`` over 100k messages, a COPY or EXPUNGE of as many)
runs in time slices so that other sessions are served in between (:mod:`mailserv.slicing`).
Another change starting in one of those gaps would work on half of the first one and could
undo part of it; the lane makes it wait its turn instead.  A backend holds its mailbox's
lane around every change (APPEND, STORE, COPY and MOVE into it, EXPUNGE) and tells the
listeners before letting go, so events come in the order of the changes::

    async with self.lane.held() as slices:
        async for part in slices.batches(uids):
            ...  # change the messages of ``part``
        self.listeners.flags_changed(self, changes, origin)

Reads need not take it: between two slices of a change they see part of it made and the
rest not, as if it had come as several changes.  So that no reader is told a HIGHESTMODSEQ
before every message of it is there, a change stamps its messages with
:attr:`ModseqLog.upcoming <mailserv.backends.kit.modlog.ModseqLog.upcoming>` and calls
``bump()`` once it is whole.  Never hold two lanes at once (COPY between two mailboxes
takes the target's, then, for MOVE, the source's): two sessions copying in opposite
directions would wait for each other forever.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from twisted.internet.defer import DeferredLock
from twisted.internet.interfaces import IReactorTime

from mailserv.slicing import TimeSlices, Turns


class Lane:
    """One per mailbox, shared by every session of it; ``turns`` are the reactor's turns its
    slices share (the backend's :class:`~mailserv.slicing.Turns`, which the server's
    sessions take too: ``ISlicedBackend``), or a reactor (a budget of the lane's own)."""

    __slots__ = ("_lock", "turns")

    def __init__(self, turns: Turns | IReactorTime) -> None:
        self.turns = Turns.of(turns)
        self._lock = DeferredLock()

    @property
    def busy(self) -> bool:
        """A change holds the lane now (another would wait)."""
        return self._lock.locked

    def slices(self) -> TimeSlices:
        """Time slices for a read of many messages, which takes no lane."""
        return TimeSlices(self.turns)

    @asynccontextmanager
    async def held(self) -> AsyncIterator[TimeSlices]:
        """Wait for the lane, then hold it for the block; the block's own time slices.

        When the lane is free and the block needs no pause, nothing waits for the reactor:
        a small change completes within the call."""
        await self._lock.acquire()
        try:
            yield self.slices()
        finally:
            self._lock.release()
