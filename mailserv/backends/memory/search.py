"""The memory backend's own SEARCH, for the keys clients send on every sync.

:class:`KeptSets` is kept as messages come, change and go: the UIDs holding each system
flag, and the UIDs of each calendar day of the internal date (in the date's own offset, as
the engine compares it).  A query made only of system flags, internal dates, UID sets and
ALL (combined with AND, OR, NOT) is then answered with set operations: UNSEEN is the
mailbox less the \\Seen set, SINCE the union of the days from the given one on (the days
kept sorted, found by bisection).  Any other key (text, sizes, keywords, MODSEQ...) makes
:meth:`KeptSets.answer` decline, and the engine evaluates the query over ``fetch()``.
"""

from __future__ import annotations

from bisect import bisect_left, insort
from collections.abc import AsyncIterator, Callable, Sequence
from collections.abc import Set as AbstractSet
from datetime import date, datetime

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
    UidIn,
)

_CANONICAL = {flag.casefold(): flag for flag in SYSTEM_FLAGS}
DEPTH_LIMIT = 64
"""Deeper trees are left to the engine (whose evaluator is iterative)."""

Found = tuple[AbstractSet[int], bool]
"""A set of UIDs, and whether the answer is its complement (NOT, UNSEEN: no copy made)."""


class Declined(Exception):
    """A key the kept sets cannot answer."""


class KeptSets:
    """The UIDs of each system flag and of each day of the internal date."""

    __slots__ = ("_day_list", "_days", "_flags")

    def __init__(self) -> None:
        self._flags: dict[str, set[int]] = {flag: set() for flag in SYSTEM_FLAGS}
        self._days: dict[int, set[int]] = {}
        self._day_list: list[int] = []  # the keys of ``_days``, ascending

    def add(self, uid: int, flags: AbstractSet[str], when: datetime) -> None:
        for flag in _system(flags):
            self._flags[flag].add(uid)
        day = when.date().toordinal()
        members = self._days.get(day)
        if members is None:
            members = self._days[day] = set()
            insort(self._day_list, day)
        members.add(uid)

    def reflag(self, uid: int, old: AbstractSet[str], new: AbstractSet[str]) -> None:
        before, after = _system(old), _system(new)
        for flag in before - after:
            self._flags[flag].discard(uid)
        for flag in after - before:
            self._flags[flag].add(uid)

    def remove(self, uid: int, flags: AbstractSet[str], when: datetime) -> None:
        for flag in _system(flags):
            self._flags[flag].discard(uid)
        day = when.date().toordinal()
        members = self._days[day]
        members.discard(uid)
        if not members:
            del self._days[day]
            del self._day_list[bisect_left(self._day_list, day)]

    def answer(self, key: SearchKey, depth: int = 0) -> Found:
        """``key`` as a set (or the complement of one); raises Declined."""
        if depth > DEPTH_LIMIT:
            raise Declined()
        match key:
            case All():
                return frozenset(), True
            case HasFlag(flag=flag, present=present):
                canonical = _CANONICAL.get(flag.casefold())
                if canonical is None:
                    raise Declined()  # keywords (and \Recent, which bind() replaces)
                return self._flags[canonical], not present
            case UidIn(uids=uids):
                return uids, False
            case DateCompare(field=DateField.INTERNAL, op=op, date=day):
                return self._dates(op, day), False
            case Not(key=inner):
                members, negated = self.answer(inner, depth + 1)
                return members, not negated
            case Or(left=left, right=right):
                return _either(self.answer(left, depth + 1), self.answer(right, depth + 1))
            case And(keys=keys):
                found: Found = (frozenset(), True)
                for part in keys:
                    found = _both(found, self.answer(part, depth + 1))
                return found
        raise Declined()

    def _dates(self, op: DateOp, day: date) -> AbstractSet[int]:
        days, wanted = self._day_list, day.toordinal()
        if op is DateOp.ON:
            return self._days.get(wanted, frozenset())
        cut = bisect_left(days, wanted)
        chosen = days[cut:] if op is DateOp.SINCE else days[:cut]
        if len(chosen) == 1:
            return self._days[chosen[0]]
        return set().union(*(self._days[d] for d in chosen))


def _system(flags: AbstractSet[str]) -> set[str]:
    return {c for c in map(_CANONICAL.get, map(str.casefold, flags)) if c is not None}


def _both(a: Found, b: Found) -> Found:
    (x, x_not), (y, y_not) = a, b
    if x_not and y_not:
        return (x | y if y else x) if x else y, True
    if x_not:
        return y - x if x else y, False
    if y_not:
        return x - y if y else x, False
    return x & y, False


def _either(a: Found, b: Found) -> Found:
    (x, x_not), (y, y_not) = a, b
    if x_not and y_not:
        return x & y, True
    if x_not:
        return x - y, True
    if y_not:
        return y - x, True
    return x | y, False


Batches = Callable[[Sequence[int]], AsyncIterator[Sequence[int]]]


async def among(found: Found, uids: Sequence[int], batches: Batches) -> list[int]:
    """Those of ``uids`` (ascending) in the answer, ascending; a large ``uids`` is gone
    through in ``batches`` (which pause between them)."""
    members, negated = found
    if not negated and len(members) * 16 < len(uids):  # few: look each up in ``uids``
        out = []
        for uid in sorted(members):
            i = bisect_left(uids, uid)
            if i < len(uids) and uids[i] == uid:
                out.append(uid)
        return out
    matched: list[int] = []
    async for part in batches(uids):
        if negated:
            matched += [uid for uid in part if uid not in members]
        else:
            matched += [uid for uid in part if uid in members]
    return matched
