"""The flag changes of a STORE, as the engine reads them: a sequence ascending by UID
(the SQL and maildir backends hand a large STORE's changes over as few groups of UIDs).

Merging the groups of a ``STORE 1:*`` of 100k messages is some 20 ms of Python work: on
the reactor thread it is done in steps (:func:`changes_in_steps`, a generator whose
``yield`` lets other work run; see :meth:`mailserv.slicing.TimeSlices.run`)."""

from __future__ import annotations

from collections.abc import Generator, Sequence
from typing import TypeVar

from mailserv.interfaces import FlagChange, FlagChangeColumns

LAZY_CHANGES = 1024
"""From this many changes on, a STORE's changes are columns (:class:`FlagChanges`)."""
STEP = 8192
"""UIDs merged between two ``yield`` of :func:`changes_in_steps` (about a ms)."""

Groups = dict[frozenset[str], list[int]]
"""The UIDs (ascending) that now have each set of flags."""
Columns = tuple[list[int], list[frozenset[str]], list[int]]
T = TypeVar("T")


class FlagChanges(FlagChangeColumns):
    """The changes of a large STORE as columns ascending by UID, made from its groups (each
    group's UIDs now have its flags): lists of ints and of shared frozensets, no object per
    message.  The engine reads the columns as they are; a ``FlagChange`` per message (100k
    of them alive at once for a ``STORE 1:*``) made the collector go over the whole heap of
    a big mailbox, holding the reactor for up to a second."""

    __slots__ = ()

    def __init__(self, groups: Groups, modseq: int) -> None:
        super().__init__(*_finished(_columns(groups, modseq)))


def _columns(groups: Groups, modseq: int) -> Generator[None, None, Columns]:
    """The columns of ``groups`` (FlagChanges's), ``STEP`` UIDs at a time."""
    items = [(flags, uids) for flags, uids in groups.items() if uids]
    if len(items) <= 1:
        flags, uids = items[0] if items else (frozenset(), [])
        return uids, [flags] * len(uids), [modseq] * len(uids)
    # One sort of plain ints: the UID and, in its last digits (base ``count``), its group;
    # the keys come in one ascending run per group, which the sort merges.
    count = len(items)
    keys: list[int] = []
    for group, (_, uids) in enumerate(items):
        for start in range(0, len(uids), STEP):
            keys += [uid * count + group for uid in uids[start : start + STEP]]
            yield
    keys.sort()
    names = [flags for flags, _ in items]
    uids_column: list[int] = []
    flags_column: list[frozenset[str]] = []
    for start in range(0, len(keys), STEP):
        yield
        part = keys[start : start + STEP]
        uids_column += [key // count for key in part]
        flags_column += [names[key % count] for key in part]
    return uids_column, flags_column, [modseq] * len(keys)


def changes_in_steps(groups: Groups, modseq: int) -> Generator[None, None, Sequence[FlagChange]]:
    """The FlagChange sequence of ``groups`` (flags: UIDs ascending), ascending by UID,
    made ``STEP`` UIDs at a time: run it with ``yield from`` in a generator of steps, or
    with :meth:`mailserv.slicing.TimeSlices.run`."""
    if sum(len(uids) for uids in groups.values()) >= LAZY_CHANGES:
        changes = FlagChanges.__new__(FlagChanges)
        FlagChangeColumns.__init__(changes, *(yield from _columns(groups, modseq)))
        return changes
    found = [FlagChange(uid, flags, modseq) for flags, uids in groups.items() for uid in uids]
    found.sort(key=lambda change: change.uid)
    return found


def changes_of(groups: Groups, modseq: int) -> Sequence[FlagChange]:
    """:func:`changes_in_steps` at once (in a thread, or for a few changes)."""
    return _finished(changes_in_steps(groups, modseq))


def _finished(steps: Generator[None, None, T]) -> T:
    while True:
        try:
            next(steps)
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]
