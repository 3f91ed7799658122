"""The unseen UIDs of a mailbox, kept in its row as runs (``mailboxes.unseen_uids``, schema 12).

SEARCH UNSEEN reads them there rather than every row of the mailbox: PostgreSQL has no index
of the unseen messages since schema 12 (a STORE of \\Seen would then update an index entry
per row, not in place), and when they are scattered a pass over 100,000 rows is what is left.
Every write that changes which messages are unseen (APPEND, STORE of \\Seen, COPY, EXPUNGE)
rewrites the text in the same transaction, in the ``mailboxes`` update it makes anyway under
the row's lock: no new contention.  ``1:5,9,12:20``; NULL when more than :data:`MAX_RUNS` runs
would be needed (the text would cost every write more than it saves SEARCH): readers then
test the rows, until the mailbox has no unseen message again.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from mailserv.syntax.sequences import merge, uids_in

Runs = list[tuple[int, int]]

MAX_RUNS = 2000
"""Runs kept at most (a text of about 20 KB); beyond, the column is NULL."""


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


def parse(text: str) -> Runs:
    runs: Runs = []
    for part in text.split(",") if text else ():
        low, _, high = part.partition(":")
        runs.append((int(low), int(high or low)))
    return runs


def dump(runs: Sequence[tuple[int, int]]) -> str | None:
    if len(runs) > MAX_RUNS:
        return None
    return ",".join(str(low) if low == high else f"{low}:{high}" for low, high in runs)


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
    runs = parse(text)
    if more:
        runs = merge([*runs, *more])
    if less:
        runs = subtract(runs, merge(less))
    return dump(runs)


def among(text: str, uids: Sequence[int]) -> list[int]:
    """The kept unseen UIDs among ``uids`` (ascending)."""
    return uids_in(parse(text), uids)
