"""The text ``1 2 3 ... n``, made once per listener and sliced for runs of numbers.

A SEARCH that matches every message of a big mailbox (``SEARCH SINCE`` an old date,
``SEARCH UNDELETED``, ``SEARCH ALL``) answers ``1 2 3 ... 100000``.  Formatting that is the
largest cost of such a command (about a millisecond per 20,000 numbers, however it is
done in Python); a run of consecutive numbers is instead a slice of this text, found by
arithmetic.  The text grows by doubling as longer runs are asked for, up to
:data:`LIMIT` numbers, a piece at a time with the reactor's turns between pieces.
"""

from __future__ import annotations

from mailserv.slicing import TimeSlices

LIMIT = 1 << 20
"""The highest number the text holds (about 7 MB); runs above it are formatted."""
PIECE = 4096
"""Numbers added to the text between two chances for the reactor."""
_PIECE_FORMAT = b" %d" * PIECE


def offset(number: int) -> int:
    """Where ``number`` (1 or more) starts in ``b"1 2 3 ..."``: each smaller number and
    the space after it come before."""
    before, low, digits = 0, 1, 1
    while low * 10 <= number:
        before += 9 * low * (digits + 1)  # the numbers of ``digits`` digits, and a space each
        low *= 10
        digits += 1
    return before + (number - low) * (digits + 1)


class CountingText:
    """``b"1 2 3 ... last"``, grown on demand (shared by the sessions of a listener)."""

    def __init__(self) -> None:
        self._text = bytearray(b"1")
        self._last = 1

    async def run(self, slices: TimeSlices, first: int, last: int) -> bytes | None:
        """``b"first first+1 ... last"``; None above :data:`LIMIT` (or below 1)."""
        if first < 1 or last > LIMIT or last < first:
            return None
        if last > self._last:
            await self._grow(slices, min(max(last, 2 * self._last), LIMIT))
        with memoryview(self._text) as text:  # one copy; released before the text grows
            return bytes(text[offset(first) : offset(last + 1) - 1])

    async def _grow(self, slices: TimeSlices, last: int) -> None:
        while self._last < last:
            count = min(PIECE, last - self._last)
            start = self._last + 1
            numbers = range(start, start + count)
            form = _PIECE_FORMAT if count == PIECE else b" %d" * count
            self._text += form % tuple(numbers)
            self._last += count
            await slices.pause()
