"""The unseen UIDs of a mailbox, kept in its row as runs (``mailboxes.unseen_uids``, schema 12).

SEARCH UNSEEN reads them there rather than every row of the mailbox: PostgreSQL has no index
of the unseen messages since schema 12 (a STORE of \\Seen would then update an index entry
per row, not in place), and when they are scattered a pass over 100,000 rows is what is left.
Every write that changes which messages are unseen (APPEND, STORE of \\Seen, COPY, EXPUNGE)
rewrites the text in the same transaction, in the ``mailboxes`` update it makes anyway under
the row's lock: no new contention.  ``1,4,4,0,3,8`` for 1:5,9,12:20: the low and high UID
of each run in turn, each written as its difference from the one before (small numbers,
which compress well; the JSON decoder and encoder read and write them, in C); NULL when more than
:data:`MAX_RUNS` runs would be needed (the text would cost every write more than it saves
SEARCH): readers then test the rows, until the mailbox has no unseen message again.
"""

from __future__ import annotations

import json
from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Sequence
from itertools import accumulate, pairwise

from mailserv.syntax.sequences import merge, uids_in

Runs = list[tuple[int, int]]

MAX_RUNS = 2000
"""Runs kept at most (a text of about 25 KB); beyond, the column is NULL."""
FEW = 32
"""Runs of a change applied one by one where they fall (bisection), not by a pass over all."""


def runs_of(uids: Iterable[int]) -> Runs:
    """Ascending distinct UIDs as inclusive runs."""
    runs: Runs = []
    for uid in uids:
        if runs and uid == runs[-1][1] + 1:
            runs[-1] = (runs[-1][0], uid)
        else:
            runs.append((uid, uid))
    return runs


def count(runs: Iterable[tuple[int, int]]) -> int:
    """UIDs in the runs."""
    return sum(high - low + 1 for low, high in runs)


def _flat(text: str) -> list[int]:
    """The bounds of the runs, low and high of each in turn."""
    return list(accumulate(json.loads("[" + text + "]"))) if text else []


def _text(flat: list[int]) -> str | None:
    if len(flat) > 2 * MAX_RUNS:
        return None
    steps = [b - a for a, b in pairwise(flat)]
    return json.dumps(flat[:1] + steps, separators=(",", ":"))[1:-1]


def parse(text: str) -> Runs:
    flat = _flat(text)
    return list(zip(flat[::2], flat[1::2], strict=True))


def dump(runs: Sequence[tuple[int, int]]) -> str | None:
    return _text([bound for run in runs for bound in run])


def _add_one(flat: list[int], low: int, high: int) -> None:
    """``low``..``high`` joined in place to the runs of ``flat``, with those it touches."""
    start = bisect_left(flat, low - 1) // 2  # the first run ending at low - 1 or later
    stop = (bisect_right(flat, high + 1) + 1) // 2  # past the last starting by high + 1
    if start < stop:
        low, high = min(low, flat[2 * start]), max(high, flat[2 * stop - 1])
    flat[2 * start : 2 * stop] = [low, high]


def _remove_one(flat: list[int], low: int, high: int) -> None:
    """``low``..``high`` taken out in place of the runs of ``flat``."""
    start = bisect_left(flat, low) // 2  # the first run ending at low or later
    stop = (bisect_right(flat, high) + 1) // 2  # past the last starting by high
    if start < stop:
        first, last = flat[2 * start], flat[2 * stop - 1]
        kept = [first, low - 1] if first < low else []
        kept += [high + 1, last] if last > high else []
        flat[2 * start : 2 * stop] = kept


def subtract(runs: Sequence[tuple[int, int]], less: Sequence[tuple[int, int]]) -> Runs:
    """``runs`` without the UIDs of ``less`` (both ascending and merged)."""
    out: Runs = []
    i = 0
    for low, high in runs:
        while i < len(less) and less[i][1] < low:
            i += 1
        j = i
        while low <= high and j < len(less) and less[j][0] <= high:
            if less[j][0] > low:
                out.append((low, less[j][0] - 1))
            low = max(low, less[j][1] + 1)
            j += 1
        if low <= high:
            out.append((low, high))
    return out


def changed(
    text: str | None,
    unseen: int,
    more: Sequence[tuple[int, int]] = (),
    less: Sequence[tuple[int, int]] = (),
) -> str | None:
    """The kept text once the runs ``more`` became unseen and ``less`` did not (or went),
    ``unseen`` being the mailbox's count of unseen messages after the write."""
    if unseen <= 0:
        return ""
    if text is None:
        return None
    if len(more) > FEW or len(less) > FEW:
        runs = parse(text)
        runs = merge([*runs, *more]) if more else runs
        return dump(subtract(runs, merge(less)) if less else runs)
    flat = _flat(text)
    for low, high in more:
        _add_one(flat, low, high)
    for low, high in less:
        _remove_one(flat, low, high)
    return _text(flat)


def among(text: str, uids: Sequence[int]) -> list[int]:
    """The kept unseen UIDs among ``uids`` (ascending)."""
    return uids_in(parse(text), uids)
