"""Long loops share the reactor: they run in time slices and let other work in between.

One reactor thread serves every connection of a process, so a loop whose length grows with
a mailbox (SEARCH over 100k messages, ``FETCH 1:*``) calls ``await slices.pause()`` every
few items: it returns at once while the current slice lasts, and otherwise lets the reactor
run whatever is waiting (other sessions' commands, IDLE notices) before going on.  A loop
over a sequence can let :meth:`TimeSlices.batches` cut it and pause between the pieces.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Generator, Sequence
from typing import TypeVar

from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import deferLater

SLICE = 0.004
"""Seconds a loop may hold the reactor before it lets others run."""
BATCH = 1000
"""Items :meth:`TimeSlices.batches` hands out between two pauses: well under a slice's
work for the cheap per-item steps of a backend (a dict lookup, a flag-set change)."""

T = TypeVar("T")


class TimeSlices:
    """The slices of one long piece of work (one per command; not shared)."""

    def __init__(self, clock: IReactorTime, length: float = SLICE) -> None:
        self._clock = clock
        self._length = length
        self._since = time.perf_counter()

    async def pause(self) -> None:
        """Return at once within the slice; else yield to the reactor, then start a new one."""
        if time.perf_counter() - self._since < self._length:
            return
        await deferLater(self._clock, 0, lambda: None)
        self._since = time.perf_counter()

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
