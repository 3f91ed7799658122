"""The engine's side of the search-key tree (:mod:`mailserv.search`).

The parser builds the tree, the engine's fallback evaluator runs it, and ``bind`` turns a
session's sequence numbers and \\Recent into UIDs before a backend that searches itself
(``IMailbox.search``) is asked.
"""

from __future__ import annotations

from collections.abc import Sequence
from collections.abc import Set as AbstractSet

from mailserv.interfaces import RECENT
from mailserv.search import And, HasFlag, InSet, Not, Or, SearchKey, StringField, UidIn
from mailserv.syntax.sequences import SequenceSet

CONTENT_FIELDS = frozenset({StringField.BODY, StringField.TEXT, StringField.HEADER})
"""String fields that may need the message bytes (HEADER only for other headers)."""


def bind(
    key: SearchKey, uids: Sequence[int], recent: AbstractSet[int], saved: Sequence[int] = ()
) -> SearchKey:
    """``key`` with sequence sets, \\Recent and ``$`` replaced by ``UidIn``, for a backend.

    Sequence numbers, \\Recent and RFC 5182's saved result exist only in a session
    (``uids`` in sequence order, the UIDs recent to it, the UIDs ``$`` stands for); a
    backend asked to search (``IMailbox.search``) gets a tree without them.  UID sets stay:
    ``*`` there is the mailbox's largest UID, which the backend knows.
    """
    if isinstance(key, InSet) and key.set.saved:
        return UidIn(frozenset(saved))
    if isinstance(key, InSet) and not key.uid:
        return UidIn(sequence_uids(key.set, uids))
    if isinstance(key, HasFlag) and key.flag.casefold() == RECENT.casefold():
        node = UidIn(frozenset(recent))
        return node if key.present else Not(node)
    if isinstance(key, Not):
        return Not(bind(key.key, uids, recent, saved))
    if isinstance(key, Or):
        return Or(bind(key.left, uids, recent, saved), bind(key.right, uids, recent, saved))
    if isinstance(key, And):
        return And(tuple(bind(k, uids, recent, saved) for k in key.keys))
    return key


def sequence_uids(numbers: SequenceSet, uids: Sequence[int]) -> frozenset[int]:
    """The UIDs of the messages a sequence set names; numbers past the end name nothing."""
    members: set[int] = set()
    if uids:
        for low, high in numbers.resolve(len(uids)):
            members.update(uids[max(low, 1) - 1 : high])
    return frozenset(members)
