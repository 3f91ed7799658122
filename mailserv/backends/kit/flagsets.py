"""SEARCH of flags and internal dates from sets kept in memory, whatever the mailbox size.

A backend keeps, as messages come, change and go, ``having`` (the UIDs having each flag
spelling: :func:`reflag`, :func:`moved` for many) and ``on_day`` (the UIDs of each day of
the internal date in its own offset, as the engine compares it, in days since the epoch:
:func:`date_of`, :func:`add_day`, :func:`undate`).  :func:`search` then answers UNSEEN,
FLAGGED, NOT DELETED, SINCE, BEFORE, ON and their ANDs, ORs and NOTs with a few set
operations; None for any other key (the backend's index, or the engine, answers).  The
maildir backend's state and the memory backend keep them, and the UIDs without \\Seen
besides, for UNSEEN (:func:`unseen_nodes`).
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping, Sequence
from datetime import date
from itertools import filterfalse

from mailserv.interfaces import SYSTEM_FLAGS
from mailserv.search import (
    All,
    And,
    DateCompare,
    DateField,
    DateOp,
    HasFlag,
    Not,
    Or,
    SearchKey,
    walk,
    without,
)

FLAG_DEPTH = 64
EPOCH_DAY = date(1970, 1, 1).toordinal()
_CANONICAL = {flag.casefold(): flag for flag in SYSTEM_FLAGS}

Having = dict[str, set[int]]
OnDay = dict[int, set[int]]
_Found = tuple[set[int], bool]
"""UIDs, and whether they are those *not* matching."""


def reflag(having: Having, uid: int, old: frozenset[str], new: frozenset[str]) -> None:
    """``uid``'s flags went from ``old`` to ``new`` (from nothing when added; to nothing
    when it goes)."""
    lost, gained = _differences(old, new)
    for flag in lost:
        having[flag].discard(uid)
    for flag in gained:
        uids = having.get(flag)
        if uids is None:
            uids = having[flag] = set()
        uids.add(uid)


def moved(having: Having, members: list[int], old: frozenset[str], new: frozenset[str]) -> None:
    """``members`` (UIDs) all went from ``old`` flags to ``new``: a few set operations in C
    for a whole group of a big STORE."""
    lost, gained = _differences(old, new)
    for flag in lost:
        having[flag].difference_update(members)
    for flag in gained:
        having.setdefault(flag, set()).update(members)


def first_without(having: Having, flag: str, entries: Iterable[int]) -> int | None:
    """The first of ``entries`` (UIDs, ascending) that lacks ``flag`` (as :func:`search`
    tests it): a pass in C that stops there, so SELECT's first unseen costs nothing when
    it comes early, and no set is made when the flag has one spelling."""
    spellings = _spellings(having, flag)
    if not spellings:
        return next(iter(entries), None)
    members = having[spellings[0]] if len(spellings) == 1 else _having(having, flag)
    return next(filterfalse(members.__contains__, entries), None)


def unseen_nodes(key: SearchKey, unseen: set[int]) -> dict[int, set[int]]:
    """:func:`search`'s ``known`` for the UNSEEN nodes of ``key`` (``HasFlag`` of \\Seen,
    absent): ``unseen``, the UIDs without \\Seen that a backend keeps as flags change
    (from ``having`` the answer is every UID but those with \\Seen: a walk over all of
    them, 6-24 ms at 100k when every message is read).  A backend keeping it spells
    \\Seen one way only, as its counts do."""
    return {
        id(node): unseen
        for node in walk(key)
        if isinstance(node, HasFlag) and not node.present and node.flag.casefold() == "\\seen"
    }


def date_of(day: date) -> int:
    """A calendar day in days since the epoch (``on_day``'s keys)."""
    return day.toordinal() - EPOCH_DAY


def add_day(on_day: OnDay, uid: int, day: int) -> None:
    on_day.setdefault(day, set()).add(uid)


def undate(on_day: OnDay, uid: int, day: int) -> None:
    members = on_day.get(day)
    if members is not None:
        members.discard(uid)
        if not members:
            del on_day[day]


def search(
    key: SearchKey,
    uids: Sequence[int],
    having: Having,
    on_day: OnDay,
    entries: Mapping[int, object],
    known: Mapping[int, set[int]] | None = None,
) -> list[int] | None:
    """The UIDs among ``uids`` (ascending) matching ``key``, when it tests nothing but
    flags and internal dates: a few set operations at any size.  None for any other key.

    ``entries``: every message of the mailbox by UID.  ``known``: the UIDs among ``uids``
    matching other nodes of ``key``, by ``id()`` of the node (e.g.
    :class:`~mailserv.backends.kit.fieldtexts.FoldedFields`)."""
    try:
        part = _matching(key, having, on_day, 0, known or {})
    except _Other:
        return None
    if part is None:
        return list(uids)
    if not uids:
        return []
    found, negated = part
    whole = len(uids) == len(entries) and uids[0] in entries and uids[-1] in entries
    if negated:  # every message but ``found``
        if whole:  # ``uids`` are the messages: no pass over ``entries``
            return without(uids, found)
        return list(filter(entries.__contains__, filterfalse(found.__contains__, uids)))
    if not whole:
        found = found.intersection(uids)  # the session knows of others than these
    # Sorted, even when most messages match: a set of UIDs (numbers close together) is
    # nearly in order already, which sorting finds in runs (3,449 UIDs of 20k: 0.15 ms),
    # where testing every UID of the mailbox for membership took 1.1 ms.
    return sorted(found)


def _matching(
    key: SearchKey, having: Having, on_day: OnDay, depth: int, known: Mapping[int, set[int]]
) -> _Found | None:
    """The UIDs of the messages matching ``key`` (None: all of them), or of those not
    matching it (``(uids, True)``: NOT and UNSEEN make no set of the whole mailbox)."""
    if depth > FLAG_DEPTH:
        raise _Other()
    found = known.get(id(key))
    if found is not None:
        return found, False
    match key:
        case All():
            return None
        case HasFlag(flag=flag, present=present):
            return _having(having, flag), not present
        case DateCompare(field=DateField.INTERNAL, op=op, date=day):
            return _dated(on_day, op, date_of(day))
        case Not(key=inner):
            excluded = _matching(inner, having, on_day, depth + 1, known)
            return (set(), False) if excluded is None else (excluded[0], not excluded[1])
        case Or(left=left, right=right):
            one = _matching(left, having, on_day, depth + 1, known)
            other = _matching(right, having, on_day, depth + 1, known)
            return None if one is None or other is None else _either(one, other)
        case And(keys=keys):
            result: _Found | None = None
            for inner in keys:
                part = _matching(inner, having, on_day, depth + 1, known)
                if part is not None:
                    result = part if result is None else _both(result, part)
            return result
    raise _Other()


def _having(having: Having, flag: str) -> set[int]:
    """As the engine's scan: the canonical system flag, or any spelling that case-folds
    to the same."""
    folded = flag.casefold()
    if folded == "\\recent":
        raise _Other()  # bound to UIDs by the engine; never stored
    spellings = {name for name in having if name.casefold() == folded}
    if folded in _CANONICAL:
        spellings.add(_CANONICAL[folded])
    spellings.add(flag)
    found: set[int] = set()
    for name in spellings:
        found |= having.get(name, set())
    return found


def _spellings(having: Having, flag: str) -> list[str]:
    """The spellings of ``flag`` that some message has (as :func:`_having` unites them)."""
    folded = flag.casefold()
    return [name for name, members in having.items() if members and name.casefold() == folded]


def _dated(on_day: OnDay, op: DateOp, target: int) -> _Found:
    """As the engine's scan: the internal date's day in its own offset, compared.  The
    smaller side is made into a set: SINCE a date most mail is newer than is "not before
    it" (a few thousand UIDs, not 100k)."""
    if op is DateOp.ON:
        return set(on_day.get(target, ())), False
    later = [m for d, m in on_day.items() if d >= target]
    earlier = [m for d, m in on_day.items() if d < target]
    wanted, other = (later, earlier) if op is DateOp.SINCE else (earlier, later)
    if sum(map(len, wanted)) <= sum(map(len, other)):
        return set().union(*wanted), False
    return set().union(*other), True


@functools.lru_cache(maxsize=256)
def _differences(old: frozenset[str], new: frozenset[str]) -> tuple[frozenset[str], frozenset[str]]:
    """The flags ``old`` has and ``new`` has not, and the other way round (a STORE of 100k
    messages compares a few distinct pairs of sets)."""
    return old - new, new - old


def _either(one: _Found, other: _Found) -> _Found:
    """OR of two results (De Morgan where one or both are complements)."""
    (a, not_a), (b, not_b) = one, other
    if not not_a and not not_b:
        return a | b, False
    if not_a and not_b:
        return a & b, True
    return (a - b, True) if not_a else (b - a, True)


def _both(one: _Found, other: _Found) -> _Found:
    """AND of two results."""
    (a, not_a), (b, not_b) = one, other
    if not not_a and not not_b:
        return a & b, False
    if not_a and not_b:
        return a | b, True
    return (b - a, False) if not_a else (a - b, False)


class _Other(Exception):
    """A key :func:`search` does not answer."""
