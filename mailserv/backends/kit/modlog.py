"""HIGHESTMODSEQ and the expunge log of one mailbox: the bookkeeping of ``changes_since``.

Every change takes a new modseq from :meth:`ModseqLog.bump`; an expunge also records its
UIDs under that modseq, so ``changes_since(m)`` can name what vanished after ``m``.  A change
made in time slices stamps its messages with :attr:`ModseqLog.upcoming` and bumps once it is
whole (see :mod:`~mailserv.backends.kit.lane`).
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable
from itertools import chain

from mailserv.interfaces import Changes, MessageMeta


class ModseqLog:
    """``highest`` starts at 1: RFC 7162 wants HIGHESTMODSEQ non-zero even when empty."""

    __slots__ = ("_vanished", "highest")

    def __init__(self, highest: int = 1) -> None:
        self.highest = highest
        self._vanished: list[tuple[int, list[int]]] = []
        """(modseq of an expunge, its UIDs), ascending by modseq: a list per expunge, not
        a tuple per message (an EXPUNGE of 20k made 20k objects for the collector)."""

    @property
    def upcoming(self) -> int:
        """The modseq the next :meth:`bump` gives (a change in progress stamps with it)."""
        return self.highest + 1

    def bump(self) -> int:
        """A new modseq, now the highest."""
        self.highest += 1
        return self.highest

    def expunged(self, uids: Iterable[int], modseq: int) -> None:
        """``uids`` went away under ``modseq`` (the latest one :meth:`bump` gave)."""
        self._vanished.append((modseq, list(uids)))

    def vanished_since(self, modseq: int) -> list[int]:
        """UIDs expunged after ``modseq``, ascending."""
        start = bisect.bisect_right(self._vanished, modseq, key=lambda entry: entry[0])
        return sorted(chain.from_iterable(uids for _, uids in self._vanished[start:]))

    def changes(
        self, messages: Iterable[MessageMeta], modseq: int, highest: int | None = None
    ) -> Changes:
        """``changes_since(modseq)`` of a mailbox holding ``messages`` (ascending UIDs).

        ``highest``: the HIGHESTMODSEQ to report when ``messages`` were read in slices; read
        it before them, so that a change made meanwhile is reported again, never missed."""
        return Changes(
            changed=[meta for meta in messages if meta.modseq > modseq],
            vanished=self.vanished_since(modseq),
            highestmodseq=self.highest if highest is None else highest,
        )
