"""The flag changes of a STORE, as the engine reads them: a sequence ascending by UID
(the SQL and maildir backends hand a large STORE's changes over as few groups of UIDs)."""

from __future__ import annotations

from collections.abc import Sequence
from itertools import chain
from typing import overload

from mailserv.interfaces import FlagChange

LAZY_CHANGES = 1024
"""From this many changes on, a STORE's FlagChange objects are made as they are read."""


class FlagChanges(Sequence[FlagChange]):
    """The changes of a large STORE, ascending by UID: each group's UIDs now have its flags.

    The objects are made when read (the engine reads them in time slices), not all at once
    in the transaction's thread or in one reactor turn.
    """

    __slots__ = ("_groups", "_last", "_modseq", "_uids")

    def __init__(self, groups: dict[frozenset[str], list[int]], modseq: int) -> None:
        items = list(groups.items())
        self._modseq = modseq
        self._last = items[-1][0]
        if len(items) == 1:
            self._uids = items[0][1]
        else:
            self._uids = sorted(chain.from_iterable(uids for _, uids in items))
        self._groups = [(flags, set(uids)) for flags, uids in items[:-1]]

    def __len__(self) -> int:
        return len(self._uids)

    @overload
    def __getitem__(self, index: int) -> FlagChange: ...

    @overload
    def __getitem__(self, index: slice) -> list[FlagChange]: ...

    def __getitem__(self, index: int | slice) -> FlagChange | list[FlagChange]:
        if isinstance(index, slice):
            return [self._change(uid) for uid in self._uids[index]]
        return self._change(self._uids[index])

    def _change(self, uid: int) -> FlagChange:
        for flags, members in self._groups:
            if uid in members:
                return FlagChange(uid, flags, self._modseq)
        return FlagChange(uid, self._last, self._modseq)


def changes_of(groups: dict[frozenset[str], list[int]], modseq: int) -> Sequence[FlagChange]:
    """The FlagChange sequence of ``groups`` (flags: UIDs ascending), ascending by UID."""
    if sum(len(uids) for uids in groups.values()) >= LAZY_CHANGES:
        return FlagChanges(groups, modseq)
    changes = [FlagChange(uid, flags, modseq) for flags, uids in groups.items() for uid in uids]
    changes.sort(key=lambda change: change.uid)
    return changes
