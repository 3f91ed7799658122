"""The flag changes of a STORE, as the engine reads them: a sequence ascending by UID
(the SQL and maildir backends hand a large STORE's changes over as few groups of UIDs)."""

from __future__ import annotations

from collections.abc import Sequence
from itertools import chain

from mailserv.interfaces import FlagChange, FlagChangeColumns

LAZY_CHANGES = 1024
"""From this many changes on, a STORE's changes are columns (:class:`FlagChanges`)."""


class FlagChanges(FlagChangeColumns):
    """The changes of a large STORE as columns ascending by UID, made from its groups (each
    group's UIDs now have its flags): lists of ints and of shared frozensets, no object per
    message.  The engine reads the columns as they are; a ``FlagChange`` per message (100k
    of them alive at once for a ``STORE 1:*``) made the collector go over the whole heap of
    a big mailbox, holding the reactor for up to a second."""

    __slots__ = ()

    def __init__(self, groups: dict[frozenset[str], list[int]], modseq: int) -> None:
        items = [(flags, uids) for flags, uids in groups.items() if uids]
        if len(items) == 1:
            flags, uids = items[0]
            super().__init__(uids, [flags] * len(uids), [modseq] * len(uids))
            return
        # One sort of plain ints: the UID and, in its last digits (base ``count``), its group.
        count = max(len(items), 1)
        keys = sorted(
            chain.from_iterable(
                [uid * count + group for uid in uids] for group, (_, uids) in enumerate(items)
            )
        )
        names = [flags for flags, _ in items]
        super().__init__(
            [key // count for key in keys],
            [names[key % count] for key in keys],
            [modseq] * len(keys),
        )


def changes_of(groups: dict[frozenset[str], list[int]], modseq: int) -> Sequence[FlagChange]:
    """The FlagChange sequence of ``groups`` (flags: UIDs ascending), ascending by UID."""
    if sum(len(uids) for uids in groups.values()) >= LAZY_CHANGES:
        return FlagChanges(groups, modseq)
    changes = [FlagChange(uid, flags, modseq) for flags, uids in groups.items() for uid in uids]
    changes.sort(key=lambda change: change.uid)
    return changes
