"""SEARCH FROM, TO, CC, BCC and SUBJECT over case-folded texts kept in memory.

The engine's scan of ``FROM x`` makes every message's ``MessageMeta`` and case-folds its
``From`` text, one Python call after another, at every SEARCH.  A backend holding the
parsed ``MessageInfo`` of each message (the memory backend) keeps instead, per field that
was searched once, the folded text per UID (:class:`FoldedFields`): folded the first time a
SEARCH needs it, dropped when the message goes; the test is then a substring test per
message, done in C over batches.  :meth:`FoldedFields.answer` gives the sets of UIDs of
every such key of a SEARCH program, for :func:`mailserv.backends.kit.flagsets.search` to
combine with the flags and dates; semantics are the scan's
(:func:`mailserv.search.evaluate.field_needle`).

Clients repeat the same few searches (``FROM boss``, ``SUBJECT invoice``): the answer of
each (field, needle) over the whole mailbox is kept (:class:`_Answers`) until a message
comes or goes (:meth:`FoldedFields.changed`), within a budget of UIDs held; flag changes
do not touch it.  A kept answer costs nothing to give again; a scan interrupted by a
change (it yields between batches) is not kept.
"""

from __future__ import annotations

import operator
from collections.abc import Awaitable, Callable, Mapping, Sequence
from itertools import compress, repeat
from typing import Protocol

from mailserv.message.info import MessageInfo
from mailserv.search import Contains, SearchKey, walk
from mailserv.search.evaluate import field_needle
from mailserv.slicing import TimeSlices

Known = dict[int, set[int]]
"""Sets of matching UIDs by ``id()`` of the key node they answer."""
Other = Callable[[Contains, Sequence[int], TimeSlices], Awaitable[set[int] | None]]
"""What answers the other string keys (e.g. a :class:`~mailserv.backends.kit.textindex.
TextIndex` BODY and TEXT), as :meth:`FoldedFields.answer` does, or None."""


class HasInfo(Protocol):
    @property
    def info(self) -> MessageInfo: ...


def _fold(text: str) -> str:
    folded = text.casefold()
    return text if folded == text else folded  # most texts: no second copy kept


ANSWER_BUDGET = 4
"""Kept answers hold at most this many UIDs per message of the mailbox, all together
(plus :data:`ANSWER_SLACK`): the oldest kept go first."""
ANSWER_SLACK = 4096


class _Answers:
    """The UIDs matching each (attribute, needle) searched, among every message of the
    mailbox as it was when kept; valid until :meth:`clear` (a message came or went)."""

    def __init__(self) -> None:
        self._kept: dict[tuple[str, str], set[int]] = {}  # oldest first
        self._held = 0
        self.generation = 0
        """Counts the changes: an answer made across one is not kept."""

    def get(self, attr: str, needle: str) -> set[int] | None:
        found = self._kept.pop((attr, needle), None)
        if found is not None:
            self._kept[attr, needle] = found  # the most recently used go last
        return found

    def keep(self, attr: str, needle: str, found: set[int], messages: int) -> None:
        budget = ANSWER_BUDGET * messages + ANSWER_SLACK
        if len(found) > budget:
            return
        old = self._kept.pop((attr, needle), None)
        self._held -= 0 if old is None else len(old)
        while self._kept and self._held + len(found) > budget:
            self._held -= len(self._kept.pop(next(iter(self._kept))))
        self._kept[attr, needle] = found
        self._held += len(found)

    def clear(self) -> None:
        self.generation += 1
        if self._kept:
            self._kept.clear()
            self._held = 0


class FoldedFields:
    """Folded texts of the fields searched so far, by ``MessageInfo`` attribute and UID,
    and the answers of the latest searches."""

    def __init__(self) -> None:
        self._texts: dict[str, dict[int, str]] = {}
        self._answers = _Answers()

    def changed(self) -> None:
        """A message came: kept answers no longer hold."""
        self._answers.clear()

    def removed(self, uid: int) -> None:
        self._answers.clear()
        for texts in self._texts.values():
            texts.pop(uid, None)

    async def answer(
        self,
        key: SearchKey,
        uids: Sequence[int],
        entries: Mapping[int, HasInfo],
        slices: TimeSlices,
        other: Other | None = None,
    ) -> Known | None:
        """The UIDs matching each FROM/TO/CC/BCC/SUBJECT node of ``key`` (among every
        message of ``entries``: a kept answer may hold some not in ``uids``, as
        :func:`~mailserv.backends.kit.flagsets.search` allows), and those among ``uids``
        matching each node ``other`` answers; None when some other string key is in it
        (the engine evaluates the program).  Callers must not change the sets."""
        known: Known = {}
        for node in walk(key):
            if not isinstance(node, Contains):
                continue
            how = field_needle(node)
            if how is not None:
                found: set[int] | None = self._answers.get(*how)
                if found is None:
                    found = await self._whole(*how, entries, slices)
            else:
                found = None if other is None else await other(node, uids, slices)
            if found is None:
                return None
            known[id(node)] = found
        return known

    async def _whole(
        self, attr: str, needle: str, entries: Mapping[int, HasInfo], slices: TimeSlices
    ) -> set[int]:
        """The UIDs of ``entries`` whose ``attr`` holds ``needle``, kept when no message
        came or went meanwhile."""
        generation = self._answers.generation
        found = await self._matching(attr, needle, list(entries), entries, slices)
        if self._answers.generation == generation:
            self._answers.keep(attr, needle, found, len(entries))
        return found

    async def _matching(
        self,
        attr: str,
        needle: str,
        uids: Sequence[int],
        entries: Mapping[int, HasInfo],
        slices: TimeSlices,
    ) -> set[int]:
        texts = self._texts.get(attr)
        if texts is None:
            texts = self._texts[attr] = {}
        found: set[int] = set()
        async for part in slices.batches(uids):
            present = part
            try:
                values = list(map(texts.__getitem__, present))
            except KeyError:  # not folded yet, or gone
                present = list(filter(entries.__contains__, part))
                for uid in present:
                    if uid not in texts:
                        texts[uid] = _fold(getattr(entries[uid].info, attr))
                values = list(map(texts.__getitem__, present))
            found.update(compress(present, map(operator.contains, values, repeat(needle))))
        return found
