"""Long loops share the reactor: they run in time slices and let other work in between.

One reactor thread serves every connection of a process, so a loop whose length grows with
a mailbox (SEARCH over 100k messages, ``FETCH 1:*``) calls ``await slices.pause()`` every
few items: it returns at once while the current reactor turn's budget lasts, and otherwise
lets the reactor run whatever is waiting (other sessions' commands, IDLE notices) before
going on.  A loop over a sequence can let :meth:`TimeSlices.batches` cut it and pause
between the pieces.

The budget is the reactor's, not the loop's: every :class:`TimeSlices` of a process takes
it from one :class:`Turns` (the IMAP sessions' ``Services.turns``, which the backend's
lanes share), so a turn runs about one slice of sliced work however many sessions run
long commands, then the reactor reads and writes the sockets again.  The loops that ran
out of it wait in line and go on one after the other, a turn each, the longest waiting
first.  (A loop that begins while none waits has a slice of its own: a command shorter
than a slice never waits.)  ``TimeSlices(clock)`` is a loop with a budget of its own
(tests, tools).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Generator, Sequence
from typing import TypeVar

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime

SLICE = 0.004
"""Seconds the sliced work of one reactor turn may hold the reactor before it lets others
run."""
BATCH = 1000
"""Items :meth:`TimeSlices.batches` hands out between two pauses: well under a slice's
work for the cheap per-item steps of a backend (a dict lookup, a flag-set change)."""

T = TypeVar("T")


class Turns:
    """The turns of one reactor as sliced work takes them: one budget of ``length`` seconds
    a turn, shared by every :class:`TimeSlices` made from this object.

    A turn's budget starts when sliced work first runs in it, when the loops waiting for
    it are resumed, or when a loop begins while none waits.  A loop pauses between pieces
    of its work; it goes on while its next piece (as long as its last one) fits in what is
    left of the budget, and otherwise waits in line.  The next turn resumes the loop that
    has waited longest, then the next ones while their pieces fit.  The first of a turn
    always goes on, so none waits for ever; one that pauses again goes to the back of the
    line.  Create one per reactor (process) and hand it to everything whose long work
    should share it."""

    __slots__ = ("_began", "_call", "_waiting", "clock", "length", "now")

    def __init__(
        self,
        clock: IReactorTime,
        length: float = SLICE,
        timer: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.clock = clock
        self.length = length
        self.now = timer
        """The time the budget is measured in (the reactor's clock is not: a test's stands
        still while work runs)."""
        self._began: float | None = None
        """When the current turn's sliced work began (``now``); None: not yet."""
        self._waiting: deque[tuple[Deferred[None], float]] = deque()
        """The loops in line: each resumes by its Deferred, its next piece's length."""
        self._call: IDelayedCall | None = None
        """The next turn's start, due at once (the reactor runs it after polling I/O)."""

    @staticmethod
    def of(clock: Turns | IReactorTime) -> Turns:
        """``clock`` itself if it is a :class:`Turns`; else a budget of its own on it."""
        return clock if isinstance(clock, Turns) else Turns(clock)

    @property
    def waiting(self) -> int:
        """Loops waiting for a turn."""
        return len(self._waiting)

    def fits(self, now: float, piece: float = 0.0) -> bool:
        """A piece of ``piece`` seconds starting ``now`` ends within the current turn's
        budget (what loops sharing it have used of it counts)."""
        if self._began is None:
            self._began = now
            self._next_turn()
        return now - self._began + piece < self.length

    def begin(self, now: float) -> None:
        """A loop begins ``now``.  While others wait in line, it shares what is left of the
        turn's budget; when none waits, the loops before it ended without giving way (each
        within a slice), and it has a budget of its own, as a loop running alone would (so
        work shorter than a slice never waits, even where the reactor does not turn)."""
        if not self._waiting:
            self._began = None
        self.fits(now)

    def wait(self, piece: float = 0.0) -> Deferred[None]:
        """Fires in a later turn, when this waiter's place in line comes and a next piece of
        ``piece`` seconds fits in it (see the class)."""
        waiter: Deferred[None] = Deferred()
        self._waiting.append((waiter, piece))
        self._next_turn()
        return waiter

    def _next_turn(self) -> None:
        if self._call is None:
            self._call = self.clock.callLater(0, self._turn)

    def _turn(self) -> None:
        """A new turn: resume the waiters in line while their pieces fit (one at least)."""
        self._call = None
        self._began = None
        if not self._waiting:
            return
        self._began = self.now()
        self._next_turn()  # ends this turn's budget whatever happens below
        first = True
        while self._waiting:
            waiter, piece = self._waiting[0]
            if not waiter.called:  # else cancelled meanwhile
                if not (first or self.fits(self.now(), piece)):
                    break
                first = False
            self._waiting.popleft()
            if not waiter.called:
                waiter.callback(None)


class TimeSlices:
    """The pauses of one long piece of work (one per command), in the budget of ``turns``:
    a shared :class:`Turns`, or a reactor (a budget of ``length`` for this work alone)."""

    __slots__ = ("_paused", "_since", "_turns")

    def __init__(self, turns: Turns | IReactorTime, length: float = SLICE) -> None:
        self._turns = turns if isinstance(turns, Turns) else Turns(turns, length)
        self._since = self._turns.now()
        """When the piece of work now running began (the start, or the last pause)."""
        self._paused = False
        """A pause came: the pieces since tell how long the next one takes.  The first
        piece, with the command's setup in it, is no measure of the next in the turn it
        ran in (nor does a loop without a reactor turning give way sooner than before).
        The loop begins (:meth:`Turns.begin`) at its first pause, as of its start: one
        that never pauses (a backend's read of a single batch inside a FETCH's loop)
        leaves the turn's budget as it was (begun at once, it gave the loop around it a
        new budget mid-turn: a FETCH's turns ran a slice past every batch's edge)."""

    async def pause(self) -> None:
        """Return at once while a next piece of work (as long as the last one) fits in the
        turn's budget; else wait for a later turn."""
        turns = self._turns
        now = turns.now()
        piece = min(now - self._since, turns.length)
        first, self._paused = not self._paused, True
        if first:
            turns.begin(self._since)
        if not turns.fits(now, 0.0 if first else piece):
            await turns.wait(piece)
            now = turns.now()
        self._since = now

    async def run(self, work: Generator[None, None, T]) -> T:
        """Run a computation written as a generator that yields every few items (so it stays
        free of the reactor) in these slices; its return value."""
        while True:
            try:
                next(work)
            except StopIteration as done:
                return done.value  # type: ignore[no-any-return]
            await self.pause()

    async def batches(self, items: Sequence[T], size: int = BATCH) -> AsyncIterator[Sequence[T]]:
        """``items`` in pieces of ``size``, with a :meth:`pause` before each but the first.

        A small sequence is one piece and never waits for the reactor.  Do not leave the
        loop early (``break``): the pieces are cheap, go through them."""
        for start in range(0, len(items), size):
            if start:
                await self.pause()
            yield items[start : start + size]
