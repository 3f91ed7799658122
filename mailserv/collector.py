"""How a server process of its own uses CPython's cyclic garbage collector.

A full (generation-2) pass of the collector walks every object it tracks and holds the
reactor thread meanwhile: with 100k messages in process that is hundreds of milliseconds,
and CPython 3.11 has no incremental collector.  :class:`CollectorPolicy` keeps the full
passes short and still frees the cycles that die late:

* **Freeze after each full pass.**  What survives a full pass is alive; the policy moves it
  to the permanent generation (``gc.freeze``) from the pass's own ``stop`` callback, when
  the younger generations are empty (the pass merged them), so nothing young and possibly
  garbage is frozen with it.  Right after its start and after each sweep it runs a second,
  near-empty full pass: CPython schedules the next full pass by the survivors of the last
  one, and that pass leaves few.  Each later pass then walks only what became long-lived
  since the previous one (its length follows the allocation rate, not the heap's size);
  they come three times as often as CPython's default (:data:`FULL_AFTER`).
* **Sweep, when the sessions are quiet.**  Reference cycles that were frozen while alive
  and became garbage later (objects freed by their reference counts need no collector) are
  out of the collector's sight: ``gc.unfreeze(); gc.collect()`` (then the freeze again) frees them.
  That is one pass over everything, so it runs only when no command has run for
  ``quiet_after`` seconds (:class:`IQuiet`, the server factory's count of commands in
  flight) and the permanent generation grew by ``grow`` since the last sweep (counting it
  walks a list: at most once per ``check_every``, and only when a full pass has frozen
  something since).  When ``size()`` (by default the process's peak resident memory,
  which costs nothing to read) has doubled since the last sweep, the next quiet moment
  sweeps whatever the count, and if none comes within ``grace`` (10 minutes) the sweep
  runs whatever the load: a bound on the memory held by what died frozen.  (Not at once:
  a mailbox loaded by a SELECT doubles a young process's memory with live objects, and
  a pass over them all then would hold every session for nothing.)

Code that has just made many objects that live on (a maildir mailbox of 100k loaded)
freezes them at once (:func:`keep_out_of_sight`) where a policy runs, before the next full
pass would walk them all.

Only for a process that is ours (``twistd imapserv``, each ``--workers`` child): an
application embedding the server keeps its own collector settings.
"""

from __future__ import annotations

import gc
import resource
import time
from collections.abc import Callable
from typing import Any

from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from zope.interface import Interface, implementer

__all__ = ["CollectorPolicy", "IQuiet", "NoSessions", "keep_out_of_sight", "peak_memory"]

_log = Logger()

FULL_AFTER = 3
"""CPython's third threshold under the policy (its own is 10): a full pass after every
third collection of the middle generation.  Each object that lives is walked by one full
pass before it is frozen however often they come, so more frequent passes cost little
more in all and each is about a third as long (maildir, 100k messages, COPY and UID MOVE
of 20k: longest pass 15-26 ms CPU instead of 18-48 ms, loaded)."""


class IQuiet(Interface):
    """Whether the process's sessions are between commands (a sweep's pause hurts no one)."""

    def quiet_for() -> float:
        """Seconds since the last running command ended; 0.0 while one runs."""


@implementer(IQuiet)
class NoSessions:
    """A process without sessions: always quiet."""

    def quiet_for(self) -> float:
        return float("inf")


def keep_out_of_sight() -> bool:
    """Freeze what is alive now, if this process follows a :class:`CollectorPolicy` (its
    sweeps free what dies frozen); whether it did.  For code that has just made many
    objects that live on, before a pass walks them all (a mailbox of 100k loaded: the
    next full pass held every thread 35 ms).  What young garbage is frozen with them waits
    for the next sweep.  In an application embedding the server (no policy), nothing."""
    for hook in gc.callbacks:
        if isinstance(getattr(hook, "__self__", None), CollectorPolicy):
            gc.freeze()
            return True
    return False


def peak_memory() -> int:
    """The process's peak resident memory (KiB on Linux); one system call."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


class CollectorPolicy:
    """Freezes what each full pass of the collector leaves; sweeps what died frozen.

    ``start()`` installs it (a ``gc.callbacks`` hook and a timer on ``clock``),
    ``stop()`` removes both.  ``poll``: seconds between looks at ``quiet``;
    ``quiet_after``: seconds without a command before a sweep; ``check_every``: seconds
    between two counts of the permanent generation, and between two looks at ``size``;
    ``grow``: the share the permanent generation must have grown by since the last sweep
    for a quiet sweep; ``size``: what must not double between sweeps (once it has, the
    next quiet moment sweeps whatever the count, and ``grace`` seconds without one force
    a sweep).  ``full_after``: collections of the middle generation between two full
    passes (CPython's third threshold; left alone when None).
    """

    def __init__(
        self,
        clock: IReactorTime,
        quiet: IQuiet,
        *,
        poll: float = 1.0,
        quiet_after: float = 1.0,
        check_every: float = 60.0,
        grow: float = 0.25,
        size: Callable[[], int] = peak_memory,
        grace: float = 600.0,
        full_after: int | None = FULL_AFTER,
    ) -> None:
        self._clock = clock
        self._quiet = quiet
        self._poll = poll
        self._quiet_after = quiet_after
        self._check_every = check_every
        self._grow = grow
        self._size = size
        self._grace = grace
        self._full_after = full_after
        self._thresholds: tuple[int, int, int] | None = None
        self._doubled_at: float | None = None
        """When ``size`` was seen doubled (a sweep is due: quiet, or after ``grace``)."""
        self._doubled_to = 0
        self._loop: LoopingCall | None = None
        self._pass_began = 0.0
        self.passes = 0
        """Full passes seen since the start (each followed by a freeze)."""
        self.longest = 0.0
        """CPU seconds of the longest full pass since the last sweep (of the thread that
        ran it: a loaded machine's waits are not the collector's)."""
        self.sweeps = 0
        self._passes_at_count = 0
        self._frozen_at_sweep = 0
        self._size_at_sweep = 0
        self._counted_at = 0.0
        self._sized_at = 0.0

    def start(self) -> None:
        """Freeze what is alive now (the collector frees what is garbage first) and watch."""
        if self._loop is not None:
            return
        loop = LoopingCall(self._look)
        loop.clock = self._clock
        loop.start(self._poll, now=False)  # first: a clock that cannot leaves gc as it was
        self._loop = loop
        if self._full_after is not None:
            self._thresholds = gc.get_threshold()
            gc.set_threshold(self._thresholds[0], self._thresholds[1], self._full_after)
        gc.callbacks.append(self._observe)
        self._settle()
        now = self._clock.seconds()
        self._counted_at = self._sized_at = now
        self._frozen_at_sweep = gc.get_freeze_count()
        self._size_at_sweep = self._size()
        self._passes_at_count = self.passes
        self.longest = 0.0
        _log.info(
            "Collector policy on: {frozen} objects frozen; full passes freeze what they "
            "leave, sweeps when no command has run for {quiet} s",
            frozen=self._frozen_at_sweep,
            quiet=self._quiet_after,
        )

    def stop(self) -> None:
        """Remove the hook and the timer (what is frozen stays so)."""
        loop, self._loop = self._loop, None
        if loop is not None and loop.running:
            loop.stop()
        if self._observe in gc.callbacks:
            gc.callbacks.remove(self._observe)
        if self._thresholds is not None:
            gc.set_threshold(*self._thresholds)
            self._thresholds = None

    def sweep(self, why: str = "asked") -> int:
        """One pass over everything, frozen or not: what died frozen is freed (the number
        of objects found unreachable)."""
        longest, passes = self.longest, self.passes
        began = time.perf_counter()
        before = gc.get_freeze_count()
        gc.unfreeze()
        freed = self._settle()
        after = gc.get_freeze_count()
        took = time.perf_counter() - began
        self.sweeps += 1
        _log.info(
            "Collector sweep ({why}): {before} frozen objects before, {after} after "
            "({freed} freed) in {ms:.0f} ms; {passes} full passes before it, the longest "
            "since the last sweep {longest:.0f} ms CPU",
            why=why,
            before=before,
            after=after,
            freed=freed,
            ms=took * 1000,
            passes=passes,
            longest=longest * 1000,
        )
        self.longest = 0.0
        self._frozen_at_sweep = after
        self._size_at_sweep = self._size()
        self._doubled_at = None
        self._passes_at_count = self.passes
        self._counted_at = self._sized_at = self._clock.seconds()
        return freed

    def _settle(self) -> int:
        """A full pass (the hook freezes its survivors), then a near-empty one: CPython
        sets when the next full pass comes by what the last one left (so soon, and short).
        The objects the first pass found unreachable."""
        freed = gc.collect()
        gc.collect()
        return freed

    def _observe(self, phase: str, info: dict[str, Any]) -> None:
        """``gc.callbacks`` hook: time each full pass (CPU), and freeze what it left.

        At a full pass's ``stop`` the younger generations are empty (the pass took them
        in), so the freeze moves exactly what survived it.  May run in any thread (the
        one whose allocation started the pass): it only sets numbers.
        """
        if info["generation"] != 2:
            return
        if phase == "start":
            self._pass_began = time.thread_time()
            return
        took = time.thread_time() - self._pass_began
        self.passes += 1
        self.longest = max(self.longest, took)
        gc.freeze()

    def _look(self) -> None:
        now = self._clock.seconds()
        if self._doubled_at is None and now - self._sized_at >= self._check_every:
            self._sized_at = now
            size = self._size()
            if size >= 2 * self._size_at_sweep > 0:
                self._doubled_at, self._doubled_to = now, size
        quiet = self._quiet.quiet_for() >= self._quiet_after
        if self._doubled_at is not None:
            grown = f"size {self._size_at_sweep} -> {self._doubled_to}"
            if quiet:
                self.sweep(f"quiet: {grown}")
            elif now - self._doubled_at >= self._grace:
                self.sweep(f"forced: {grown}, never quiet for {self._grace:.0f} s")
            return
        if not quiet:
            return
        if now - self._counted_at < self._check_every or self.passes == self._passes_at_count:
            return  # counted lately, or nothing frozen since: the permanent generation is
            # as it was at the last count at most
        self._counted_at = now
        self._passes_at_count = self.passes
        frozen = gc.get_freeze_count()
        if frozen >= self._frozen_at_sweep * (1 + self._grow):
            self.sweep(f"quiet: frozen {self._frozen_at_sweep} -> {frozen}")
