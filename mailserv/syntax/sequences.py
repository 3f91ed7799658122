"""Sequence sets (``1:4,7,10:*``) as ranges, never as lists of every number they cover.

A set is parsed once, with ``*`` kept as a marker; ``resolve`` turns it into merged ranges
against the mailbox's largest number, and ``uids_in`` / ``uids_for_seqs`` pick the members
of the session's UID list by bisection, so ``1:4294967295`` costs no more than ``1:2``.

RFC 5182's ``$`` (the result a SEARCH saved) is read only where the caller allows it, and
only alone (``sequence-set =/ seq-last-command``): it has no ranges, the session's view
gives its messages.
"""

from __future__ import annotations

import re
from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final

from mailserv.syntax.errors import ParseError

STAR: Final = 0
"""Marks ``*`` in a parsed range (0 is never a valid sequence number or UID)."""
MAX_NUMBER: Final = 0xFFFFFFFF
MAX_RANGES: Final = 100_000
SAVED: Final = "$"
"""RFC 5182's marker for the last saved SEARCH result."""

_SET = re.compile(r"(?:[0-9]+|\*)(?::(?:[0-9]+|\*))?(?:,(?:[0-9]+|\*)(?::(?:[0-9]+|\*))?)*")
_ELEMENT = re.compile(r"([0-9]+|\*)(?::([0-9]+|\*))?")


class InvalidSequenceNumber(ValueError):
    """A message sequence number beyond the messages the session knows (a BAD)."""

    def __init__(self, number: int, count: int) -> None:
        super().__init__(f"Invalid message sequence number {number} (mailbox has {count})")
        self.number = number
        self.count = count


@dataclass(frozen=True, slots=True)
class SequenceSet:
    """Parsed ranges as sent; a bound equal to ``STAR`` means ``*``."""

    ranges: tuple[tuple[int, int], ...]
    saved: bool = False
    """``$`` (RFC 5182): no ranges; the messages of the session's saved SEARCH result."""

    @property
    def has_star(self) -> bool:
        return any(STAR in pair for pair in self.ranges)

    def resolve(self, largest: int) -> list[tuple[int, int]]:
        """Sorted, merged, inclusive ranges with ``*`` = ``largest``.

        ``a:b`` with a > b is ``b:a``; with ``largest`` 0 (empty mailbox) a range holding
        ``*`` names nothing.
        """
        found: list[tuple[int, int]] = []
        for low, high in self.ranges:
            if low == STAR or high == STAR:
                if largest <= 0:
                    continue
                low = largest if low == STAR else low
                high = largest if high == STAR else high
            found.append((low, high) if low <= high else (high, low))
        return merge(found)

    def __str__(self) -> str:
        if self.saved:
            return SAVED
        return ",".join(
            _bound(low) if low == high else f"{_bound(low)}:{_bound(high)}"
            for low, high in self.ranges
        )


def _bound(value: int) -> str:
    return "*" if value == STAR else str(value)


def merge(ranges: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    """Sort and merge overlapping or adjacent inclusive ranges (each low <= high)."""
    merged: list[tuple[int, int]] = []
    for low, high in sorted(ranges):
        if merged and low <= merged[-1][1] + 1:
            if high > merged[-1][1]:
                merged[-1] = (merged[-1][0], high)
        else:
            merged.append((low, high))
    return merged


def _number(text: str) -> int:
    if text == "*":
        return STAR
    digits = text.lstrip("0")
    if not digits:
        raise ParseError(None, "0 is not a valid sequence number or UID")
    if len(digits) > 10 or int(digits) > MAX_NUMBER:
        raise ParseError(None, f"Number out of range: {text[:20]}")
    return int(digits)


def parse_sequence_set(text: str, saved: bool = False) -> SequenceSet:
    """``1:4,7,10:*`` → SequenceSet; ParseError (a ValueError) when malformed.

    ``saved``: ``$`` is read too (the server offers SEARCHRES), alone.
    """
    if saved and SAVED in text:
        if text != SAVED:
            raise ParseError(None, f"$ must stand alone, not in {text[:40]!r}")
        return SequenceSet((), saved=True)
    if not _SET.fullmatch(text):
        raise ParseError(None, f"Invalid sequence set {text[:40]!r}")
    if text.count(",") >= MAX_RANGES:
        raise ParseError(None, f"Sequence set has more than {MAX_RANGES} ranges")
    ranges = []
    for low, high in _ELEMENT.findall(text):
        first = _number(low)
        ranges.append((first, _number(high) if high else first))
    return SequenceSet(tuple(ranges))


def uids_in(ranges: Iterable[tuple[int, int]], uids: Sequence[int]) -> list[int]:
    """The members of the ascending ``uids`` inside ``ranges`` (as ``resolve`` gives them:
    sorted and merged, so the result is ascending without duplicates)."""
    found: list[int] = []
    for low, high in ranges:
        start = bisect_left(uids, low)
        stop = bisect_right(uids, high, start)
        if start < stop:
            found.extend(uids[start:stop])
    return found


def _check_seqs(ranges: Sequence[tuple[int, int]], count: int) -> None:
    for _low, high in ranges:
        if high > count:
            raise InvalidSequenceNumber(high, count)


def uids_for_seqs(ranges: Sequence[tuple[int, int]], uids: Sequence[int]) -> list[int]:
    """The UIDs of the messages numbered by ``ranges`` (message n is ``uids[n - 1]``);
    InvalidSequenceNumber when a number exceeds ``len(uids)``."""
    _check_seqs(ranges, len(uids))
    found: list[int] = []
    for low, high in ranges:
        found.extend(uids[low - 1 : high])
    return found


def seqs_in(ranges: Sequence[tuple[int, int]], count: int) -> list[int]:
    """The sequence numbers ``ranges`` name; InvalidSequenceNumber beyond ``count``."""
    _check_seqs(ranges, count)
    found: list[int] = []
    for low, high in ranges:
        found.extend(range(low, high + 1))
    return found


def format_set(numbers: Iterable[int]) -> str:
    """``1:5,7,9:10``: ascending runs collapsed, order otherwise kept (COPYUID pairs the
    source and destination sets by position)."""
    parts: list[str] = []
    start: int | None = None
    previous = 0
    for value in numbers:
        if start is not None and value == previous + 1:
            previous = value
            continue
        if start is not None:
            parts.append(str(start) if start == previous else f"{start}:{previous}")
        start = previous = value
    if start is not None:
        parts.append(str(start) if start == previous else f"{start}:{previous}")
    return ",".join(parts)
