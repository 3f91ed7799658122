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


class FoldedFields:
    """Folded texts of the fields searched so far, by ``MessageInfo`` attribute and UID."""

    def __init__(self) -> None:
        self._texts: dict[str, dict[int, str]] = {}

    def removed(self, uid: int) -> None:
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
        """The UIDs among ``uids`` matching each FROM/TO/CC/BCC/SUBJECT node of ``key``,
        and each node ``other`` answers; None when some other string key is in it (the
        engine evaluates the program)."""
        known: Known = {}
        for node in walk(key):
            if not isinstance(node, Contains):
                continue
            how = field_needle(node)
            if how is not None:
                found: set[int] | None = await self._matching(*how, uids, entries, slices)
            else:
                found = None if other is None else await other(node, uids, slices)
            if found is None:
                return None
            known[id(node)] = found
        return known

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
