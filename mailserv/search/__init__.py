"""The query ``IMailbox.search`` is given: a tree of search keys, and its charset.

The engine parses SEARCH into a ``SearchProgram`` and, before asking a backend, replaces
what only a session knows: sequence numbers and ``\\Recent`` become ``UidIn`` sets, so a
backend sees UIDs only.  Shorthands are normalised at parse time so that consumers see few
node types: NEW is ``And(UidIn(recent), HasFlag(SEEN, False))``, OLD is ``Not(UidIn(...))``,
every flag key (UNSEEN, KEYWORD x, ...) is a ``HasFlag``.  A backend translates the nodes it
can (``walk`` lists them) and returns None from ``search`` for the rest: the engine then
evaluates the query itself over ``fetch()`` results.  Only a mailbox that declares
``ISearchableMailbox`` is asked at all (:func:`backend_search`).

Nodes are frozen dataclasses, compared by value (``query == UNSEEN`` recognises the most
common query).  ``InSet.set`` is a :class:`mailserv.syntax.sequences.SequenceSet`; its
``resolve(largest)`` gives the ascending ``(low, high)`` ranges (``*`` is ``largest``, the
mailbox's highest UID).
"""

from __future__ import annotations

import enum
from bisect import bisect_left
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from itertools import filterfalse

from mailserv.interfaces import SEEN, IMailbox, ISearchableMailbox, Narrowed
from mailserv.syntax.sequences import SequenceSet

__all__ = [
    "UNSEEN",
    "All",
    "And",
    "Contains",
    "DateCompare",
    "DateField",
    "DateOp",
    "HasFlag",
    "InSet",
    "InternalSince",
    "ModSeqAtLeast",
    "Not",
    "ObjectIdIs",
    "Or",
    "SavedDateCompare",
    "SearchKey",
    "SearchProgram",
    "SizeCompare",
    "StringField",
    "UidIn",
    "backend_narrowing",
    "backend_search",
    "walk",
]


class StringField(enum.Enum):
    """Where a string key looks: a header field, the body, or the whole text."""

    BCC = "BCC"
    CC = "CC"
    FROM = "FROM"
    SUBJECT = "SUBJECT"
    TO = "TO"
    HEADER = "HEADER"  # the field named by ``Contains.header``
    BODY = "BODY"
    TEXT = "TEXT"


class DateField(enum.Enum):
    INTERNAL = "INTERNAL"  # BEFORE / ON / SINCE
    SENT = "SENT"  # SENTBEFORE / SENTON / SENTSINCE: the Date: header


class DateOp(enum.Enum):
    BEFORE = "BEFORE"
    ON = "ON"
    SINCE = "SINCE"


@dataclass(frozen=True, slots=True)
class All:
    """Every message."""


@dataclass(frozen=True, slots=True)
class HasFlag:
    """``flag`` set (``present``) or not set; system flags spelled ``\\Seen`` etc.

    Keywords keep the client's spelling; flags compare case-insensitively.
    """

    flag: str
    present: bool = True


@dataclass(frozen=True, slots=True)
class Contains:
    """Case-insensitive substring ``value`` in ``field``.

    For HEADER, ``header`` is the field name as sent; an empty ``value`` then means "has
    that header at all".
    """

    field: StringField
    value: str
    header: str = ""


@dataclass(frozen=True, slots=True)
class DateCompare:
    """The calendar date of the internal date or the Date: header, against ``date``."""

    field: DateField
    op: DateOp
    date: date


@dataclass(frozen=True, slots=True)
class InternalSince:
    """The internal date at or after ``moment`` (timezone-aware, whole seconds): a point in
    time, where ``DateCompare`` compares calendar days.  RFC 5032's YOUNGER is this, OLDER
    its ``Not``."""

    moment: datetime


@dataclass(frozen=True, slots=True)
class SizeCompare:
    """RFC822.SIZE strictly larger (``larger``) or strictly smaller than ``size``."""

    larger: bool
    size: int


@dataclass(frozen=True, slots=True)
class InSet:
    """A message set: sequence numbers, or UIDs when ``uid`` (``UID <set>``)."""

    set: SequenceSet
    uid: bool = False


@dataclass(frozen=True, slots=True)
class UidIn:
    """Explicit UIDs: what ``bind`` makes of session-relative keys (sequence sets, RECENT)."""

    uids: frozenset[int]


@dataclass(frozen=True, slots=True)
class ModSeqAtLeast:
    """RFC 7162 ``MODSEQ [entry type] n``: mod-sequence >= ``modseq``.

    ``entry`` (e.g. ``/flags/\\Seen``) and ``entry_type`` (priv/shared/all, lower case) are
    kept for backends that track per-flag mod-sequences; the engine uses the message's.
    """

    modseq: int
    entry: str | None = None
    entry_type: str | None = None


@dataclass(frozen=True, slots=True)
class ObjectIdIs:
    """RFC 8474 ``EMAILID id`` (``thread`` False) or ``THREADID id``: the message's id is
    ``value`` (:mod:`mailserv.message.ids`)."""

    thread: bool
    value: str


@dataclass(frozen=True, slots=True)
class SavedDateCompare:
    """RFC 8514 ``SAVEDBEFORE``/``SAVEDON``/``SAVEDSINCE``: the calendar date of the save
    date (the internal date where the store keeps none) against ``date``; ``op`` None is
    ``SAVEDATESUPPORTED``: the messages that have a save date."""

    op: DateOp | None
    date: date | None = None


@dataclass(frozen=True, slots=True)
class Not:
    key: SearchKey


@dataclass(frozen=True, slots=True)
class Or:
    left: SearchKey
    right: SearchKey


@dataclass(frozen=True, slots=True)
class And:
    """All of ``keys``: the top level of a SEARCH and every parenthesised list."""

    keys: tuple[SearchKey, ...]


SearchKey = (
    All
    | HasFlag
    | Contains
    | DateCompare
    | InternalSince
    | SizeCompare
    | InSet
    | UidIn
    | ModSeqAtLeast
    | ObjectIdIs
    | SavedDateCompare
    | Not
    | Or
    | And
)


@dataclass(frozen=True, slots=True)
class SearchProgram:
    """A parsed SEARCH: the criteria and the charset the client named (upper case)."""

    key: SearchKey
    charset: str | None = None


UNSEEN = SearchProgram(HasFlag(SEEN, present=False))
"""``SEARCH UNSEEN``: what SELECT asks for its first unseen message, and clients on every sync."""


def walk(key: SearchKey) -> list[SearchKey]:
    """Every node of the tree, ``key`` first (iterative: depth never costs stack)."""
    out: list[SearchKey] = []
    todo: list[SearchKey] = [key]
    while todo:
        node = todo.pop()
        out.append(node)
        if isinstance(node, Not):
            todo.append(node.key)
        elif isinstance(node, Or):
            todo.extend((node.right, node.left))
        elif isinstance(node, And):
            todo.extend(reversed(node.keys))
    return out


def without(uids: Sequence[int], left: Collection[int]) -> list[int]:
    """``uids`` (ascending) less ``left``.  A few (a sixteenth of ``uids`` at most) are cut
    out slice by slice: the slices between them cost little, where a test of every UID
    took 1 ms at 20k (``SINCE`` a date before nearly all mail, ``NOT DELETED``).  More are
    left out in one pass in C."""
    if len(left) * 16 > len(uids):
        gone = left if isinstance(left, set | frozenset) else set(left)
        return list(filterfalse(gone.__contains__, uids))
    out: list[int] = []
    start = 0
    for uid in sorted(left):
        end = bisect_left(uids, uid, start)
        out += uids[start:end]
        start = end + 1 if end < len(uids) and uids[end] == uid else end
    out += uids[start:]
    return out


async def backend_search(
    mailbox: IMailbox, query: SearchProgram, uids: Sequence[int]
) -> Sequence[int] | None:
    """The mailbox's own answer to ``query`` among ``uids``; None when it has no search of
    its own (it does not provide ``ISearchableMailbox``), declines this query, or only
    narrows it down (see :func:`backend_narrowing`)."""
    found = await backend_narrowing(mailbox, query, uids)
    return None if isinstance(found, Narrowed) else found


async def backend_narrowing(
    mailbox: IMailbox, query: SearchProgram, uids: Sequence[int]
) -> Sequence[int] | Narrowed | None:
    """:func:`backend_search`, with the answers that only narrow the query down (the
    caller evaluates it on the messages a :class:`Narrowed` lists)."""
    if not ISearchableMailbox.providedBy(mailbox):
        return None
    searchable: ISearchableMailbox = ISearchableMailbox(mailbox)
    return await searchable.search(query, uids)
