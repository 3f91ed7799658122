"""SORT's order (RFC 5256 section 3, RFC 5957): criteria, keys and a sort that shares the reactor.

The keys were computed when each message entered the store (``MessageInfo``'s SORT fields);
here they are only read, as columns (:class:`mailserv.interfaces.SortKeys`): a mailbox that
keeps them so (``ISortKeysMailbox``) hands them over whole, the others' are read from
``fetch()`` results (:func:`keys_of`).  Messages equal under every criterion keep their
mailbox order (the sequence number is the last key); REVERSE turns one criterion around.
The work is written as generators that yield every few thousand items, run by
:meth:`mailserv.slicing.TimeSlices.run`, so sorting 100k messages never holds the reactor
for more than a slice.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Generator, Iterable, Sequence
from typing import Any, TypeVar, cast

from mailserv.imap import esearch
from mailserv.imap.arguments import text_atom
from mailserv.imap.commands.messages import search_uids
from mailserv.imap.replies import Bad
from mailserv.imap.session import Session
from mailserv.imap.view import SelectedView
from mailserv.interfaces import ISortKeysMailbox, SortKeys
from mailserv.message.sortcolumns import KEYS, Key, keys_of
from mailserv.search import SearchProgram
from mailserv.slicing import TimeSlices
from mailserv.syntax.tokens import Atom, ParenList, Token

T = TypeVar("T")
U = TypeVar("U")
Work = Generator[None, None, T]
"""A computation that yields now and then to let the reactor run."""

CHUNK = 4096
"""Items sorted or merged between two yields (about a millisecond)."""
THREAD_KEYS = ("DATE", "MESSAGEID", "REFERENCES", "SUBJECT", "REPLY")
"""The columns THREAD reads."""

MAX_CRITERIA = 32
"""Sort criteria accepted in one command."""

Criterion = tuple[str, bool]
"""(key name, reversed)."""


def parse_criteria(token: Token) -> list[Criterion]:
    """``(REVERSE? key ...)``; BAD for anything else."""
    if not isinstance(token, ParenList) or not token.items:
        raise Bad("SORT needs a parenthesised list of sort criteria")
    if len(token.items) > MAX_CRITERIA * 2:
        raise Bad("Too many sort criteria")
    criteria: list[Criterion] = []
    reverse = False
    for item in token.items:
        word = text_atom(item).upper()
        if word == "REVERSE" and not reverse:
            reverse = True
            continue
        if word not in KEYS:
            raise Bad(f"Unknown sort criterion {word[:40]}")
        criteria.append((word, reverse))
        reverse = False
    if reverse:
        raise Bad("REVERSE must be followed by a sort criterion")
    return criteria


def sort_order(criteria: Sequence[Criterion], keys: SortKeys) -> Work[list[int]]:
    """The positions of ``keys.uids`` (given in mailbox order) in the criteria's order."""
    columns: list[Sequence[Key]] = []
    for name, reverse in criteria:
        column = cast(Sequence[Key], keys.columns[name])
        if reverse:
            column = yield from _reversed(column)
        columns.append(column)
    rows: list[tuple[Key, ...]] = yield from gathered(
        range(len(keys.uids)),
        lambda part, at: zip(*(c[at : at + len(part)] for c in columns), part, strict=True),
    )
    ordered = yield from sorted_slices(rows)
    positions = yield from gathered(ordered, lambda part, _: (cast(int, r[-1]) for r in part))
    yield from released(rows, ordered)
    return positions


def picked(column: Sequence[int], order: Sequence[int]) -> Work[list[int]]:
    """``[column[i] for i in order]``, a chunk at a time."""
    return (yield from gathered(order, lambda part, _: (column[i] for i in part)))


def gathered(items: Sequence[T], make: Callable[[Sequence[T], int], Iterable[U]]) -> Work[list[U]]:
    """What ``make(part, start)`` gives for each chunk of ``items`` (``start``: the chunk's
    place in ``items``), in one list, with a yield after each chunk."""
    out: list[U] = []
    for start in range(0, len(items), CHUNK):
        out.extend(make(items[start : start + CHUNK], start))
        yield
    return out


def _reversed(column: Sequence[Key]) -> Work[Sequence[Key]]:
    """Values that sort the other way round: numbers negated, strings by negated rank."""
    if not column or not isinstance(column[0], str):
        numbers = cast(Sequence[float], column)
        return (yield from gathered(numbers, lambda part, _: (-value for value in part)))
    seen: set[Key] = set()
    for start in range(0, len(column), CHUNK):
        seen.update(column[start : start + CHUNK])
        yield
    distinct = yield from sorted_slices(list(seen))
    seen.clear()
    rank: dict[Key, int] = {}
    for start in range(0, len(distinct), CHUNK):
        rank.update((value, -at) for at, value in enumerate(distinct[start : start + CHUNK], start))
        yield
    return (yield from gathered(column, lambda part, _: (rank[value] for value in part)))


def sorted_slices(items: list[T]) -> Work[list[T]]:
    """``sorted(items)``, in runs of :data:`CHUNK` merged with yields in between."""
    if len(items) <= CHUNK:
        return sorted(items)  # type: ignore[type-var]
    runs = []
    for start in range(0, len(items), CHUNK):
        runs.append(sorted(items[start : start + CHUNK]))  # type: ignore[type-var]
        yield
    out: list[T] = []
    append = out.append
    for count, item in enumerate(heapq.merge(*runs)):  # type: ignore[type-var]
        append(item)
        if not count % CHUNK:
            yield
    return out


def released(*lists: list[Any]) -> Work[None]:
    """Empty ``lists`` (in place) a chunk at a time: the last references to 100k tuples
    dropped at once freed them in one go, 10-14 ms of a reactor turn."""
    for items in lists:
        while items:
            del items[-CHUNK:]
            yield


async def matching(
    session: Session, view: SelectedView, program: SearchProgram, names: Sequence[str]
) -> tuple[list[int], SortKeys]:
    """The messages of the view that match ``program``: their sequence numbers and their
    keys ``names``, in mailbox order (only messages the session has been told of)."""
    found = await search_uids(session, view, program)
    seqs = view.seqs_of(found)
    uids = view.uids
    wanted = [uids[seq - 1] for seq in seqs]
    box = view.mailbox
    if ISortKeysMailbox.providedBy(box):
        keys = await ISortKeysMailbox(box).sort_keys(wanted, names)
    else:
        metas = await box.fetch(wanted)  # ascending, as ``wanted``
        keys = await TimeSlices(session.services.turns).run(keys_of(metas, names))
    if len(keys.uids) != len(wanted):  # some expunged meanwhile: keep the others' numbers
        present = set(keys.uids)
        seqs = [seq for seq, uid in zip(seqs, wanted, strict=True) if uid in present]
    return seqs, keys


async def write_numbers(session: Session, prefix: bytes, numbers: Sequence[int]) -> None:
    """``* <prefix> n n n...`` in pieces, pausing between them (100k numbers take ~20 ms)."""
    slices = TimeSlices(session.services.turns)
    line = [prefix, await esearch.number_list(slices, numbers)] if numbers else [prefix]
    session.write(b" ".join(line) + b"\r\n")


def criteria_args(args: Sequence[Token], what: str) -> tuple[Token, list[Token]]:
    """``<first> charset search-key...`` (SORT's and THREAD's shape): the first argument and
    the rest as SEARCH reads it (``CHARSET charset key...``)."""
    if len(args) < 3:
        raise Bad(f"{what} takes a charset and search criteria after its first argument")
    return args[0], [Atom("CHARSET"), *args[1:]]
