"""The search-key tree: what a SEARCH asked for, apart from how it gets answered.

The parser builds it, the engine's fallback evaluator runs it, and a backend that searches
itself (``IMailbox.search``) may translate it.  Shorthands are normalised at parse time so
that consumers see few node types: NEW is ``And(RECENT, UNSEEN)``, OLD is ``NOT RECENT``,
every flag key (UNSEEN, KEYWORD x, ...) is a ``HasFlag``.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from datetime import date

from mailserv.imap.sequence import SequenceSet

RECENT = "\\Recent"
"""The session flag; ``HasFlag(RECENT)`` is answered from the session, not the store."""


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
    | SizeCompare
    | InSet
    | UidIn
    | ModSeqAtLeast
    | Not
    | Or
    | And
)


@dataclass(frozen=True, slots=True)
class SearchProgram:
    """A parsed SEARCH: the criteria and the charset the client named (upper case)."""

    key: SearchKey
    charset: str | None = None


UNSEEN = SearchProgram(HasFlag("\\Seen", present=False))
"""``SEARCH UNSEEN``: what SELECT asks for its first unseen message, and clients on every sync."""


CONTENT_FIELDS = frozenset({StringField.BODY, StringField.TEXT, StringField.HEADER})
"""String fields that may need the message bytes (HEADER only for other headers)."""


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


def uses_modseq(key: SearchKey) -> bool:
    """True when a MODSEQ key appears: RFC 7162 then wants ``(MODSEQ n)`` in the reply."""
    return any(isinstance(node, ModSeqAtLeast) for node in walk(key))


def bind(key: SearchKey, uids: Sequence[int], recent: AbstractSet[int]) -> SearchKey:
    """``key`` with sequence sets and \\Recent replaced by ``UidIn``, for a backend.

    Sequence numbers and \\Recent exist only in a session (``uids`` in sequence order, the
    UIDs recent to it); a backend asked to search (``IMailbox.search``) gets a tree without
    them.  UID sets stay: ``*`` there is the mailbox's largest UID, which the backend knows.
    """
    if isinstance(key, InSet) and not key.uid:
        return UidIn(sequence_uids(key.set, uids))
    if isinstance(key, HasFlag) and key.flag.casefold() == RECENT.casefold():
        node = UidIn(frozenset(recent))
        return node if key.present else Not(node)
    if isinstance(key, Not):
        return Not(bind(key.key, uids, recent))
    if isinstance(key, Or):
        return Or(bind(key.left, uids, recent), bind(key.right, uids, recent))
    if isinstance(key, And):
        return And(tuple(bind(k, uids, recent) for k in key.keys))
    return key


def sequence_uids(numbers: SequenceSet, uids: Sequence[int]) -> frozenset[int]:
    """The UIDs of the messages a sequence set names; numbers past the end name nothing."""
    members: set[int] = set()
    if uids:
        for low, high in numbers.resolve(len(uids)):
            members.update(uids[max(low, 1) - 1 : high])
    return frozenset(members)
